#!/usr/bin/python3
"""Writes the ONNX fuzz seeds (tests/data/fuzz/seeds/onnx) with PyTorch's
exporter: tiny models that reach every part of the importer (Gemm, MatMul +
Add, Conv + Relu with padding, pooling, batch norm, GELU's formula, a
residual block with a projection, Reshape, Softmax, branches that make a
Graph, Add/Sub/Mul/Div of constants that make Affine layers, two inputs and
two outputs). The seeds every_kind_glassbox.onnx and graph_glassbox.onnx are
glassbox's own exports (opsets 17 and 15) of tests/checkpoint_models.hpp's
every_kind_model() and graph_model(); two_inputs_glassbox.onnx is ctest
onnx_export's two_inputs case (opset 16).

    /usr/bin/python3 tests/data/fuzz/make_onnx_seeds.py
"""
import os

import torch

torch.manual_seed(0)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds", "onnx")


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 3, 3, padding=1, stride=2)
        self.projection = torch.nn.Conv2d(2, 3, 1, stride=2)
        self.head = torch.nn.Linear(3 * 3 * 3, 2)

    def forward(self, x):
        x = torch.relu(self.conv(x)) + self.projection(x)
        return torch.softmax(self.head(x.reshape(x.shape[0], -1)), dim=1)


class Branches(torch.nn.Module):
    """A shortcut of two layers, a concat with the input and a sigmoid gate: a Graph layer."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 3, 3, padding=1)
        self.down = torch.nn.Sequential(torch.nn.AvgPool2d(1), torch.nn.Conv2d(2, 3, 1))
        self.gate = torch.nn.Conv2d(5, 5, 1)

    def forward(self, x):
        x = torch.cat([torch.relu(self.conv(x)) + self.down(x), x], dim=1)
        return (x * torch.sigmoid(self.gate(x))).flatten(1)


class MatMulMlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(4, 3))
        self.b = torch.nn.Parameter(torch.randn(3))
        self.norm = torch.nn.BatchNorm1d(3)

    def forward(self, x):
        return torch.nn.functional.gelu(self.norm(x @ self.w + self.b))


class Rescaled(torch.nn.Module):
    """Scalars, a per-channel scale and shift, and a constant minus the features: Affine layers."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 2)
        self.gamma = torch.nn.Parameter(torch.rand(2, 1, 1))
        self.beta = torch.nn.Parameter(torch.rand(2, 1, 1))

    def forward(self, x):
        x = self.conv((x - 0.5) / 0.25) * self.gamma + self.beta
        return (1.0 - x).flatten(1)


class TwoInputs(torch.nn.Module):
    """Two inputs merged by a concat, two outputs."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(3, 2)
        self.b = torch.nn.Conv2d(1, 1, 2)

    def forward(self, a, b):
        h = torch.cat([torch.tanh(self.a(a)), self.b(b).flatten(1)], 1)
        return h, torch.relu(self.a(a))


def main():
    os.makedirs(OUT, exist_ok=True)
    cases = {
        "block.onnx": (Block(), (1, 2, 6, 6), False),
        "matmul_gelu.onnx": (MatMulMlp(), (2, 4), False),
        "pools.onnx": (torch.nn.Sequential(torch.nn.Conv2d(1, 2, 2), torch.nn.LeakyReLU(),
                                           torch.nn.AvgPool2d(2, padding=1), torch.nn.MaxPool2d(2),
                                           torch.nn.Flatten(), torch.nn.Linear(2, 2), torch.nn.LogSoftmax(1)),
                       (1, 1, 5, 5), True),
        "branches.onnx": (Branches(), (1, 2, 3, 3), True),
        "rescaled.onnx": (Rescaled(), (1, 1, 3, 3), True),
        "two_inputs.onnx": (TwoInputs(), [(1, 3), (1, 1, 2, 2)], True),
    }
    for name, (model, shape, dynamic) in cases.items():
        model.eval()
        shapes = shape if isinstance(shape, list) else [shape]
        inputs = ["x"] if len(shapes) == 1 else [f"x{k}" for k in range(len(shapes))]
        outputs = ["y"] if name != "two_inputs.onnx" else ["y0", "y1"]
        axes = {t: {0: "batch"} for t in inputs + outputs} if dynamic else None
        torch.onnx.export(model, tuple(torch.rand(*s) for s in shapes), os.path.join(OUT, name), opset_version=13,
                          input_names=inputs, output_names=outputs, dynamic_axes=axes)
    print(f"make_onnx_seeds: {len(cases)} seeds in {OUT}")


if __name__ == "__main__":
    main()
