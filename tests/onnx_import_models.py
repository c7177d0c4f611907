#!/usr/bin/python3
"""First half of the ONNX import test (tests/onnx_import_check.cpp is the second).

Builds small PyTorch models with random weights, exports each with
torch.onnx.export (opset 14, dynamic batch), and writes next to it 100
inputs, PyTorch's outputs, a random output weighting R and the gradient of
sum(outputs * R) with respect to the inputs (autograd), all raw little-endian
float32; manifest.txt lists each case with the input and output shapes.

    onnx_import_models.py OUT_DIR      exit 0: written, 77: skipped (no torch/onnx)
"""
import os
import sys

try:
    import numpy as np
    import torch
    import onnx  # noqa: F401  (torch.onnx.export needs it)
except ImportError as e:
    print(f"SKIP: the ONNX import test needs Debian's python3-torch and python3-onnx ({e})")
    sys.exit(77)

torch.manual_seed(0)
CASES = 100


class SeedCnn(torch.nn.Sequential):
    """The seed CNN: Conv2D(32, 3x3, relu) -> MaxPool 2x2 -> Flatten -> Dense(10, softmax)."""

    def __init__(self):
        super().__init__(torch.nn.Conv2d(1, 32, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                         torch.nn.Linear(5408, 10), torch.nn.Softmax(dim=1))


class SmallResNet(torch.nn.Module):
    """A stem (conv + batch norm, folded by the exporter), a residual block with
    a strided 1x1 projection shortcut, one with an identity shortcut, global
    average pooling and a linear head."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.conv_a = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.conv_b = torch.nn.Conv2d(16, 16, 3, padding=1)
        self.projection = torch.nn.Conv2d(8, 16, 1, stride=2)
        self.conv_c = torch.nn.Conv2d(16, 16, 3, padding=1)
        self.head = torch.nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.stem(x)))
        x = self.conv_b(torch.relu(self.conv_a(x))) + self.projection(x)
        x = x + torch.tanh(self.conv_c(x))
        return self.head(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1))


class BranchResNet(torch.nn.Module):
    """Branches that are not plain residual blocks: a ResNet-D downsampling
    block (its shortcut an average pool and a 1x1 conv with batch norm), an
    Inception-like concat of a 1x1 conv, a 3x3 conv chain and a max pool, and
    a gate multiplying a branch by its sigmoid."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU())
        self.body = torch.nn.Sequential(torch.nn.Conv2d(8, 12, 3, stride=2, padding=1), torch.nn.ReLU(),
                                        torch.nn.Conv2d(12, 12, 3, padding=1))
        self.down = torch.nn.Sequential(torch.nn.AvgPool2d(2), torch.nn.Conv2d(8, 12, 1), torch.nn.BatchNorm2d(12))
        self.branch1 = torch.nn.Conv2d(12, 6, 1)
        self.branch3 = torch.nn.Sequential(torch.nn.Conv2d(12, 4, 1), torch.nn.Tanh(), torch.nn.Conv2d(4, 6, 3, padding=1))
        self.pool = torch.nn.MaxPool2d(3, stride=1, padding=1)
        self.gate = torch.nn.Conv2d(24, 24, 1)
        self.head = torch.nn.Linear(24, 10)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(self.body(x) + self.down(x))
        x = torch.cat([self.branch1(x), self.branch3(x), self.pool(x)], dim=1)
        x = x * torch.sigmoid(self.gate(x))
        return self.head(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1))


class DenseBlock(torch.nn.Module):
    """DenseNet's pattern: every conv reads the concat of the input and every
    earlier conv's output, so one tensor feeds several concats."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(2, 3, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(5, 3, 3, padding=1)
        self.conv3 = torch.nn.Conv2d(8, 3, 1)
        self.head = torch.nn.Linear(11 * 6 * 6, 5)

    def forward(self, x):
        y1 = torch.relu(self.conv1(x))
        y2 = torch.relu(self.conv2(torch.cat([x, y1], 1)))
        y3 = torch.tanh(self.conv3(torch.cat([x, y1, y2], 1)))
        return self.head(torch.cat([x, y1, y2, y3], 1).flatten(1))


class SqueezeExcite(torch.nn.Module):
    """A squeeze-and-excitation block: global pooling kept at (N, C, 1, 1),
    two 1x1 convs and a sigmoid gate that scales the features (a broadcast Mul)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.reduce = torch.nn.Conv2d(8, 4, 1)
        self.expand = torch.nn.Conv2d(4, 8, 1)
        self.head = torch.nn.Linear(8 * 6 * 6, 5)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        gate = torch.sigmoid(self.expand(torch.relu(self.reduce(torch.nn.functional.adaptive_avg_pool2d(x, 1)))))
        return self.head((x * gate).flatten(1))


class Rescaled(torch.nn.Module):
    """Constants and parameters applied elementwise: the input normalised by
    Python scalars, (x - mean) / std; a per-channel scale and shift,
    x * gamma + beta; a residual branch scaled per channel by a learned
    gamma (the constant first: gamma * f(x)); a constant minus the
    features; and the head's output doubled plus a per-class offset."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 6, 3)
        self.gamma = torch.nn.Parameter(torch.rand(6, 1, 1) + 0.5)
        self.beta = torch.nn.Parameter(torch.randn(6, 1, 1) * 0.1)
        self.branch = torch.nn.Conv2d(6, 6, 3, padding=1)
        self.layer_scale = torch.nn.Parameter(torch.rand(6, 1, 1) * 0.5)
        self.head = torch.nn.Linear(6 * 6 * 6, 4)
        self.offset = torch.nn.Parameter(torch.randn(4))

    def forward(self, x):
        x = (x - 0.1307) / 0.3081
        x = torch.relu(self.conv(x) * self.gamma + self.beta)
        x = x + self.layer_scale * self.branch(x)
        x = 1.0 - torch.tanh(x)
        return self.head(x.flatten(1)) * 2.0 + self.offset


class TwoInputsTwoHeads(torch.nn.Module):
    """Several inputs and outputs: an image and a feature vector, two heads,
    one reading both inputs (a concat), one the features alone."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.meta = torch.nn.Linear(5, 8)
        self.head = torch.nn.Linear(4 * 6 * 6 + 8, 3)
        self.aux = torch.nn.Linear(8, 2)

    def forward(self, image, meta):
        features = torch.relu(self.conv(image)).flatten(1)
        m = torch.tanh(self.meta(meta))
        return self.head(torch.cat([features, m], 1)), torch.sigmoid(self.aux(m))


class SqueezeExciteLinear(torch.nn.Module):
    """Squeeze-and-excitation as many write it, with Linear layers: the pooled
    features viewed as (N, C), two Linear layers, and the gate viewed back as
    (N, C, 1, 1) (a Reshape computed from its own shape); a second gate made
    (N, C, 1, 1) by unsqueeze."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 6, 3, padding=1)
        self.fc1 = torch.nn.Linear(6, 3)
        self.fc2 = torch.nn.Linear(3, 6)
        self.shift = torch.nn.Linear(6, 6)
        self.head = torch.nn.Linear(6 * 6 * 6, 4)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        pooled = torch.nn.functional.adaptive_avg_pool2d(x, 1)
        pooled = pooled.view(pooled.size(0), -1)
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(pooled))))
        x = x * gate.view(gate.size(0), -1, 1, 1)
        x = x + torch.tanh(self.shift(pooled)).unsqueeze(-1).unsqueeze(-1)
        return self.head(x.flatten(1))


def mlp():
    """GELU in both forms, batch norm on features (kept as a node), dropout, log-softmax."""
    return torch.nn.Sequential(
        torch.nn.Linear(784, 64), torch.nn.GELU(), torch.nn.BatchNorm1d(64), torch.nn.Dropout(0.3),
        torch.nn.Linear(64, 32), torch.nn.GELU(approximate="tanh"), torch.nn.Linear(32, 10),
        torch.nn.LogSoftmax(dim=1))


def pools():
    """Padded and strided windows: explicit conv padding, leaky ReLU, average
    pooling that leaves the padding out of its count and one that counts it
    (exported as a Pad node), max pooling with a stride."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.LeakyReLU(0.1),
        torch.nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), torch.nn.MaxPool2d(2, stride=1),
        torch.nn.AvgPool2d(2, padding=1), torch.nn.Flatten(), torch.nn.Linear(6 * 3 * 3, 12), torch.nn.Tanh(),
        torch.nn.Linear(12, 3),
        torch.nn.Sigmoid())


class ViewCnn(torch.nn.Module):
    """x.view(x.size(0), -1): a Reshape whose shape the graph computes from the tensor's own shape."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.fc = torch.nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        return self.fc(x.view(x.size(0), -1))


class LstmClassifier(torch.nn.Module):
    """Row-by-row digits: an LSTM over 28 steps of 28 pixels, its last step's output, a linear head."""

    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(28, 32, batch_first=True)
        self.head = torch.nn.Linear(32, 10)

    def forward(self, x):
        steps, _ = self.lstm(x)
        return self.head(steps[:, -1, :])


class GruLastState(torch.nn.Module):
    """A GRU's final hidden state h_n into a linear head."""

    def __init__(self):
        super().__init__()
        self.gru = torch.nn.GRU(12, 16, batch_first=True)
        self.head = torch.nn.Linear(16, 4)

    def forward(self, x):
        _, h = self.gru(x)
        return self.head(h[-1])


class RnnSequence(torch.nn.Module):
    """A tanh RNN's every step, flattened into a linear head."""

    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.RNN(6, 8, batch_first=True)
        self.head = torch.nn.Linear(5 * 8, 3)

    def forward(self, x):
        steps, _ = self.rnn(x)
        return self.head(steps.flatten(1))


def randomize_statistics(model):
    """Batch norm with running statistics that are not the defaults."""
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            with torch.no_grad():
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)


def write(path, tensor):
    tensor.detach().numpy().astype("<f4").tofile(path)


def main(out):
    os.makedirs(out, exist_ok=True)
    cases = [("seed_cnn", SeedCnn(), (1, 28, 28)), ("small_resnet", SmallResNet(), (1, 12, 12)),
             ("mlp_gelu", mlp(), (784,)), ("pools", pools(), (3, 10, 10)),
             ("lstm_classifier", LstmClassifier(), (28, 28)), ("gru_last_state", GruLastState(), (7, 12)),
             ("rnn_sequence", RnnSequence(), (5, 6)), ("view_cnn", ViewCnn(), (1, 8, 8)),
             ("branch_resnet", BranchResNet(), (1, 12, 12)), ("dense_block", DenseBlock(), (2, 6, 6)),
             ("squeeze_excite", SqueezeExcite(), (1, 6, 6)), ("rescaled", Rescaled(), (1, 8, 8)),
             ("two_inputs_two_heads", TwoInputsTwoHeads(), [(1, 6, 6), (5,)]),
             ("squeeze_excite_linear", SqueezeExciteLinear(), (1, 6, 6))]
    with open(f"{out}/manifest.txt", "w") as manifest:
        for name, model, sample in cases:
            randomize_statistics(model)
            model.eval()
            # Several inputs or outputs travel packed, as glassbox reads them:
            # each sample's parts flattened one after another.
            samples = sample if isinstance(sample, list) else [sample]
            inputs = [f"input_{k}" for k in range(len(samples))] if len(samples) > 1 else ["input"]
            outs = model(*[torch.rand(1, *s) for s in samples])
            outputs = [f"output_{k}" for k in range(len(outs))] if isinstance(outs, tuple) else ["output"]
            torch.onnx.export(model, tuple(torch.rand(1, *s) for s in samples), f"{out}/{name}.onnx",
                              opset_version=14, input_names=inputs, output_names=outputs,
                              dynamic_axes={t: {0: "batch"} for t in inputs + outputs})
            parts = [torch.rand(CASES, *s, requires_grad=True) for s in samples]
            ys = model(*parts)
            ys = ys if isinstance(ys, tuple) else (ys,)
            y = torch.cat([t.flatten(1) for t in ys], 1) if len(ys) > 1 else ys[0]
            weighting = torch.randn(y.shape)
            (y * weighting).sum().backward()
            x = torch.cat([t.flatten(1) for t in parts], 1) if len(parts) > 1 else parts[0]
            grad = torch.cat([t.grad.flatten(1) for t in parts], 1) if len(parts) > 1 else parts[0].grad
            write(f"{out}/{name}.in.f32", x)
            write(f"{out}/{name}.out.f32", y)
            write(f"{out}/{name}.r.f32", weighting)
            write(f"{out}/{name}.grad.f32", grad)
            dims = lambda s: " ".join(str(d) for d in [len(s), *s])  # noqa: E731
            manifest.write(f"{name} {dims(tuple(x.shape))} {dims(tuple(y.shape))}\n")
    print(f"onnx_import_models: {len(cases)} models in {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
