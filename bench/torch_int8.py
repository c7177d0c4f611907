#!/usr/bin/python3
"""PyTorch reference for bench/int8.cpp: the seed CNN statically quantized to
int8 (eager mode, conv+relu fused, per-channel weights) with the onednn
engine (Debian's torch has no fbgemm/x86), inference at batch 256, the median
of 5 runs as torch_common.py times them; qnnpack's figure too."""
import os
import sys

import torch
from torch_common import DEFAULTS, TAG, median_seconds

n = int(sys.argv[1]) if len(sys.argv) > 1 else 8192


class SeedCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = torch.ao.quantization.QuantStub()
        self.conv = torch.nn.Conv2d(1, 32, 3)
        self.relu = torch.nn.ReLU()
        self.pool = torch.nn.MaxPool2d(2)
        self.fc = torch.nn.Linear(5408, 10)
        self.dequant = torch.ao.quantization.DeQuantStub()

    def forward(self, x):
        x = self.pool(self.relu(self.conv(self.quant(x))))
        return self.dequant(self.fc(torch.flatten(x, 1)))


if not DEFAULTS:
    torch.set_num_threads(int(os.environ.get("GLASSBOX_NUM_THREADS", os.cpu_count())))
torch.manual_seed(0)
x = torch.rand(n, 1, 28, 28)
print(f"{TAG} {torch.__version__}, threads {torch.get_num_threads()}, samples {n}")
for engine in ("onednn", "qnnpack"):
    if engine not in torch.backends.quantized.supported_engines:
        print(f"{TAG}: no {engine} engine")
        continue
    torch.backends.quantized.engine = engine
    model = SeedCNN().eval()
    model.qconfig = torch.ao.quantization.get_default_qconfig(engine)
    fused = torch.ao.quantization.fuse_modules(model, [["conv", "relu"]])
    prepared = torch.ao.quantization.prepare(fused)
    with torch.no_grad():
        prepared(x[:1000])
    quantized = torch.ao.quantization.convert(prepared)

    def infer():
        with torch.no_grad():
            for start in range(0, n, 256):
                quantized(x[start:start + 256])

    name = "seed_cnn_int8" if engine == "onednn" else "seed_cnn_int8_qnnpack"
    print(f"{TAG} {name} infer_b256 {n / median_seconds(infer):.0f} samples/s")
