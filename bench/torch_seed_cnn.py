#!/usr/bin/python3
"""PyTorch reference for bench/seed_cnn.cpp: the same model, optimizer, batches
and sample count, timed the same way (see torch_common.py)."""
import sys

import torch
from torch_common import run_classifier


def seed_cnn():
    return torch.nn.Sequential(torch.nn.Conv2d(1, 32, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                               torch.nn.Flatten(), torch.nn.Linear(5408, 10))


run_classifier("seed_cnn", seed_cnn, (1, 28, 28), int(sys.argv[1]) if len(sys.argv) > 1 else 4096)
