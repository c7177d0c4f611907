#!/usr/bin/python3
"""PyTorch reference for bench/mlp.cpp: the same model, optimizer, batches and
sample count, timed the same way (see torch_common.py)."""
import sys

import torch
from torch_common import run_classifier


def mlp():
    return torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128),
                               torch.nn.ReLU(), torch.nn.Linear(128, 10))


run_classifier("mlp", mlp, (784,), int(sys.argv[1]) if len(sys.argv) > 1 else 8192)
