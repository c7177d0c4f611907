#!/usr/bin/python3
"""Trains the small CNN shipped as tests/data/onnx/small_cnn_mnist.onnx and
exports it with PyTorch's exporter, for examples/inspect_onnx (which opens it
offline) and the ctest that runs it.

Conv2d(1, 8, 3) -> ReLU -> MaxPool2d(2) -> Conv2d(8, 16, 3) -> ReLU ->
MaxPool2d(2) -> Flatten -> Linear(400, 10) -> Softmax, on MNIST pixels in
[0, 1] (as glassbox's load_mnist gives them): Adam 1e-3, batch 64, 2 epochs
on the 60,000 training digits, seed 0; opset 13 with a dynamic batch.

    /usr/bin/python3 tests/data/onnx/make_small_cnn.py MNIST_DIR [OUT.onnx]
"""
import os
import sys

import numpy as np
import torch


def read_idx(path):
    with open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def main(mnist_dir, out):
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    images = torch.from_numpy(read_idx(f"{mnist_dir}/train-images-idx3-ubyte").astype(np.float32) / 255)
    labels = torch.from_numpy(read_idx(f"{mnist_dir}/train-labels-idx1-ubyte").astype(np.int64))
    images = images.unsqueeze(1)
    features = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Conv2d(8, 16, 3), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(400, 10))
    optimizer = torch.optim.Adam(features.parameters(), lr=1e-3)
    for epoch in range(2):
        order = torch.randperm(len(images))
        for start in range(0, len(images), 64):
            batch = order[start:start + 64]
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(features(images[batch]), labels[batch])
            loss.backward()
            optimizer.step()
        print(f"epoch {epoch + 1}: last batch loss {loss.item():.4f}")
    test_images = torch.from_numpy(read_idx(f"{mnist_dir}/t10k-images-idx3-ubyte").astype(np.float32) / 255)
    test_labels = torch.from_numpy(read_idx(f"{mnist_dir}/t10k-labels-idx1-ubyte").astype(np.int64))
    model = torch.nn.Sequential(features, torch.nn.Softmax(dim=1)).eval()
    with torch.no_grad():
        accuracy = (model(test_images.unsqueeze(1)).argmax(1) == test_labels).float().mean().item()
    print(f"test accuracy {100 * accuracy:.2f}%")
    torch.onnx.export(model, torch.rand(1, 1, 28, 28), out, opset_version=13, input_names=["digits"],
                      output_names=["probabilities"],
                      dynamic_axes={"digits": {0: "batch"}, "probabilities": {0: "batch"}})
    print(f"written: {out}")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else
         os.path.join(os.path.dirname(os.path.abspath(__file__)), "small_cnn_mnist.onnx"))
