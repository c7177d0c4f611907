#!/usr/bin/python3
"""PyTorch reference for bench/saliency.cpp: the seed CNN trained one epoch on
the same MNIST subset, then gradient saliency of 1,000 test images in one batch
and Integrated Gradients (50 Gauss-Legendre steps, zero baseline, as Captum's
default) of 100; images/s, timed as in torch_common.py. IG is written out by
hand (Captum is not packaged in Debian); its internal batch is the fastest of
several sizes here, so PyTorch is not held back by one choice."""
import os
import sys

import numpy as np
import torch
from torch_common import TAG, median_seconds

here = os.path.dirname(os.path.abspath(__file__))
data_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "tests", "data", "mnist-subset")


def read_idx(name):
    raw = open(os.path.join(data_dir, name), "rb").read()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


if TAG == "torch":
    torch.set_num_threads(int(os.environ.get("GLASSBOX_NUM_THREADS", os.cpu_count())))
torch.manual_seed(0)
train_x = torch.tensor(read_idx("train-images-idx3-ubyte"), dtype=torch.float32).div(255).unsqueeze(1)
train_y = torch.tensor(read_idx("train-labels-idx1-ubyte"), dtype=torch.long)
test_x = torch.tensor(read_idx("t10k-images-idx3-ubyte"), dtype=torch.float32).div(255).unsqueeze(1)
model = torch.nn.Sequential(torch.nn.Conv2d(1, 32, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                            torch.nn.Linear(5408, 10))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
order = torch.randperm(len(train_x))
for start in range(0, len(train_x), 32):
    batch = order[start:start + 32]
    opt.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(train_x[batch]), train_y[batch]).backward()
    opt.step()
model.eval()
for p in model.parameters():
    p.requires_grad_(False)
print(f"{TAG} {torch.__version__}, threads {torch.get_num_threads()}, trained on {len(train_x)} images")

images = test_x[:1000].contiguous()


def saliency():
    x = images.clone().requires_grad_(True)
    out = model(x)
    targets = out.argmax(1, keepdim=True)
    out.gather(1, targets).sum().backward()
    return x.grad


print(f"{TAG} seed_cnn saliency_1000 {1000 / median_seconds(saliency):.0f} images/s")

hundred = test_x[:100].contiguous()
nodes, weights = np.polynomial.legendre.leggauss(50)
alphas = torch.tensor((nodes + 1) / 2, dtype=torch.float32)
step_weights = torch.tensor(weights / 2, dtype=torch.float32)


def integrated_gradients(rows_per_pass):
    with torch.no_grad():
        targets = model(hundred).argmax(1)
    # (example, step) rows, example-major; baseline zero, so a point is alpha * x.
    points = (alphas.view(1, -1, 1, 1, 1) * hundred.unsqueeze(1)).reshape(-1, 1, 28, 28)
    row_targets = targets.repeat_interleave(len(alphas)).view(-1, 1)
    grads = torch.empty_like(points)
    for start in range(0, len(points), rows_per_pass):
        x = points[start:start + rows_per_pass].clone().requires_grad_(True)
        model(x).gather(1, row_targets[start:start + rows_per_pass]).sum().backward()
        grads[start:start + rows_per_pass] = x.grad
    integral = (grads.view(100, len(alphas), 1, 28, 28) * step_weights.view(1, -1, 1, 1, 1)).sum(1)
    return hundred * integral


best = max(100 / median_seconds(lambda: integrated_gradients(rows)) for rows in (250, 1000, 5000))
print(f"{TAG} seed_cnn ig50_100 {best:.0f} images/s")
