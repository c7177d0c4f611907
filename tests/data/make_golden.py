#!/usr/bin/python3
"""Writes the PyTorch golden vectors that tests/test_parity.cpp compares against.

Run with Debian's PyTorch:  /usr/bin/python3 tests/data/make_golden.py
Inputs are drawn as float32 and computed in float64, so the C++ float and
double builds read the very same inputs and compare with exact references.

Format (golden/*.txt): one tensor per line,
    <name> <rank> <dim_0> ... <dim_rank-1> <value> <value> ...
"""
import os
import torch

torch.manual_seed(20261126)
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "golden")


def rand(*shape, low=-2.0, high=2.0):
    """float32-representable inputs, returned as float64."""
    return (torch.rand(*shape, dtype=torch.float32) * (high - low) + low).double()


class Writer:
    def __init__(self, name):
        self.path = os.path.join(OUT, name + ".txt")
        self.lines = []

    def add(self, name, t):
        t = torch.as_tensor(t, dtype=torch.float64).detach()
        dims = list(t.shape)
        values = " ".join(repr(float(v)) for v in t.reshape(-1).tolist())
        self.lines.append(f"{name} {len(dims)} {' '.join(map(str, dims))} {values}".replace("  ", " "))

    def close(self):
        with open(self.path, "w") as f:
            f.write("\n".join(self.lines) + "\n")


def layer_case(w, name, module, x):
    x = x.clone().requires_grad_(True)
    y = module(x)
    dy = rand(*y.shape)
    y.backward(dy)
    w.add(f"{name}.x", x)
    w.add(f"{name}.y", y)
    w.add(f"{name}.dy", dy)
    w.add(f"{name}.dx", x.grad)
    for pname, p in module.named_parameters():
        w.add(f"{name}.{pname}", p)
        w.add(f"{name}.d{pname}", p.grad)


def layers():
    w = Writer("layers")
    dense = torch.nn.Linear(5, 3).double()
    with torch.no_grad():
        dense.weight.copy_(rand(3, 5, low=-1, high=1))
        dense.bias.copy_(rand(3, low=-1, high=1))
    layer_case(w, "dense", dense, rand(4, 5))
    x = rand(4, 6, low=-3, high=3)
    layer_case(w, "relu", torch.nn.ReLU(), x)
    layer_case(w, "leaky_relu", torch.nn.LeakyReLU(0.1), x)
    layer_case(w, "sigmoid", torch.nn.Sigmoid(), x)
    layer_case(w, "tanh", torch.nn.Tanh(), x)
    layer_case(w, "gelu", torch.nn.GELU(), x)
    layer_case(w, "gelu_tanh", torch.nn.GELU(approximate="tanh"), x)
    layer_case(w, "softmax", torch.nn.Softmax(dim=1), x)
    w.close()


def conv_layers():
    """Conv2D variants and pooling, NCHW; Conv2d weights in OIHW."""
    w = Writer("conv")
    x = rand(2, 3, 7, 6)
    convs = {
        "conv_valid": dict(kernel_size=3),
        "conv_stride_pad": dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 2)),
        "conv_same_dilated": dict(kernel_size=3, padding="same", dilation=2),
        "conv_1x1_nobias": dict(kernel_size=1, bias=False),
    }
    for name, kw in convs.items():
        conv = torch.nn.Conv2d(3, 4, **kw).double()
        with torch.no_grad():
            for p in conv.parameters():
                p.copy_(rand(*p.shape, low=-0.5, high=0.5))
        layer_case(w, name, conv, x)
    class ConvReLU(torch.nn.Conv2d):
        """Conv2D with the fused ReLU (Keras' activation="relu")."""
        def forward(self, inp):
            return torch.relu(super().forward(inp))

    conv_relu = ConvReLU(3, 4, 3, padding=1).double()
    with torch.no_grad():
        for p in conv_relu.parameters():
            p.copy_(rand(*p.shape, low=-0.5, high=0.5))
    layer_case(w, "conv_relu", conv_relu, x)
    layer_case(w, "max_pool", torch.nn.MaxPool2d(2), x)
    layer_case(w, "max_pool_stride_pad", torch.nn.MaxPool2d(3, stride=2, padding=1), x)
    layer_case(w, "avg_pool", torch.nn.AvgPool2d(2), x)
    layer_case(w, "avg_pool_pad", torch.nn.AvgPool2d(3, stride=2, padding=1), x)
    layer_case(w, "avg_pool_pad_exclude", torch.nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), x)
    layer_case(w, "global_avg_pool", torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()), x)
    layer_case(w, "flatten", torch.nn.Flatten(), x)
    w.close()


def losses():
    w = Writer("losses")
    cases = [
        ("mse", torch.nn.MSELoss(), rand(4, 3), rand(4, 3)),
        ("cross_entropy", torch.nn.CrossEntropyLoss(), rand(5, 4, low=-4, high=4),
         torch.tensor([0, 3, 1, 1, 2])),
        ("bce_with_logits", torch.nn.BCEWithLogitsLoss(), rand(4, 3, low=-6, high=6),
         rand(4, 3, low=0, high=1)),
    ]
    for name, fn, z, target in cases:
        z = z.clone().requires_grad_(True)
        loss = fn(z, target)
        loss.backward()
        w.add(f"{name}.output", z)
        w.add(f"{name}.target", target)
        w.add(f"{name}.loss", loss.reshape(1))
        w.add(f"{name}.grad", z.grad)
    w.close()


def optimizers():
    w = Writer("optimizers")
    w0 = rand(3, 4)
    grads = [rand(3, 4) for _ in range(5)]
    w.add("initial", w0)
    for k, g in enumerate(grads):
        w.add(f"grad{k}", g)
    cases = {
        "sgd": lambda p: torch.optim.SGD(p, lr=0.1),
        "sgd_momentum": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.1),
        "sgd_nesterov_wd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
        "adam": lambda p: torch.optim.Adam(p, lr=0.01),
        "adam_wd": lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
        "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
    }
    for name, make in cases.items():
        p = torch.nn.Parameter(w0.clone())
        opt = make([p])
        for k, g in enumerate(grads):
            p.grad = g.clone()
            opt.step()
            w.add(f"{name}.step{k + 1}", p)
    w.close()


def normalization():
    """BatchNorm1d over features and BatchNorm2d over channels: a training step
    (forward, backward, running statistics after it), then eval on the same x."""
    w = Writer("norm")
    for name, bn, x in [("bn1d", torch.nn.BatchNorm1d(4), rand(6, 4)),
                        ("bn2d", torch.nn.BatchNorm2d(3, momentum=0.2), rand(2, 3, 5, 4))]:
        bn = bn.double()
        with torch.no_grad():
            bn.weight.copy_(rand(*bn.weight.shape, low=0.5, high=1.5))
            bn.bias.copy_(rand(*bn.bias.shape, low=-0.5, high=0.5))
        bn.train()
        layer_case(w, name, bn, x)
        w.add(f"{name}.running_mean", bn.running_mean)
        w.add(f"{name}.running_var", bn.running_var)
        bn.eval()
        with torch.no_grad():
            w.add(f"{name}.y_eval", bn(x))
    w.close()


def attribution():
    """Gradient saliency (torch.autograd.grad of the target logits) and
    Integrated Gradients with a zero baseline by the midpoint rule (16 steps)
    and Gauss-Legendre (8 points), on Conv2d(1, 2, 3) -> Tanh -> Flatten ->
    Linear(18, 4)."""
    import numpy
    w = Writer("attribution")
    conv = torch.nn.Conv2d(1, 2, 3).double()
    dense = torch.nn.Linear(18, 4).double()
    with torch.no_grad():
        conv.weight.copy_(rand(2, 1, 3, 3, low=-1, high=1))
        conv.bias.copy_(rand(2, low=-0.5, high=0.5))
        dense.weight.copy_(rand(4, 18, low=-1, high=1))
        dense.bias.copy_(rand(4, low=-0.5, high=0.5))
    model = torch.nn.Sequential(conv, torch.nn.Tanh(), torch.nn.Flatten(), dense)
    x = rand(3, 1, 5, 5, low=-1, high=1)
    targets = torch.tensor([1, 3, 0])
    w.add("model.conv_weight", conv.weight)
    w.add("model.conv_bias", conv.bias)
    w.add("model.dense_weight", dense.weight)
    w.add("model.dense_bias", dense.bias)
    w.add("model.x", x)
    w.add("model.targets", targets)

    def target_gradient(points, rows):
        points = points.clone().requires_grad_(True)
        score = model(points).gather(1, rows.view(-1, 1)).sum()
        return torch.autograd.grad(score, points)[0]

    w.add("saliency", target_gradient(x, targets))
    for name, alphas, weights in [
            ("ig_middle", (torch.arange(16, dtype=torch.float64) + 0.5) / 16, torch.full((16,), 1 / 16.0)),
            ("ig_gauss", *[torch.tensor((v + 1) / 2 if i == 0 else v / 2) for i, v in
                           enumerate(numpy.polynomial.legendre.leggauss(8))])]:
        total = torch.zeros_like(x)
        for a, wt in zip(alphas, weights):
            total += wt * target_gradient(a * x, targets)
        w.add(name, x * total)
    w.close()


def recurrent():
    """torch.nn.RNN / LSTM / GRU, one layer, batch_first; "_last" cases keep
    only the last step's output; "_truncated" detaches the state every 2 steps."""
    w = Writer("recurrent")
    n, steps, features, hidden = 3, 5, 4, 6
    for kind, cls in [("simple_rnn", torch.nn.RNN), ("lstm", torch.nn.LSTM), ("gru", torch.nn.GRU)]:
        module = cls(features, hidden, batch_first=True).double()
        with torch.no_grad():
            for p in module.parameters():
                p.copy_(rand(*p.shape, low=-0.6, high=0.6))
        for case, last, truncate in [("", False, 0), ("_last", True, 0), ("_truncated", False, 2)]:
            name = kind + case
            x = rand(n, steps, features, low=-1.5, high=1.5).requires_grad_(True)
            module.zero_grad()
            if truncate:
                outputs, state = [], None
                for start in range(0, steps, truncate):
                    if state is not None:
                        state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
                    out, state = module(x[:, start:start + truncate], state)
                    outputs.append(out)
                y = torch.cat(outputs, dim=1)
            else:
                y, _ = module(x)
            if last:
                y = y[:, -1]
            dy = rand(*y.shape)
            y.backward(dy)
            w.add(f"{name}.x", x)
            w.add(f"{name}.y", y)
            w.add(f"{name}.dy", dy)
            w.add(f"{name}.dx", x.grad)
            for pname, p in module.named_parameters():
                pname = pname.replace("_l0", "")
                w.add(f"{name}.{pname}", p)
                w.add(f"{name}.d{pname}", p.grad)
    w.close()


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    layers()
    conv_layers()
    losses()
    optimizers()
    normalization()
    attribution()
    recurrent()
    print("golden vectors written to", OUT, "with torch", torch.__version__)
