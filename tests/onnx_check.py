#!/usr/bin/python3
"""Second half of the ONNX export test (tests/onnx_export.cpp is the first).

For each exported model: onnx.checker (full check) and strict shape inference
must pass and infer the output shape; the layer names must be the node names;
and a PyTorch model rebuilt from the ONNX initializers must give glassbox's
outputs on the 100 saved inputs (max abs difference < 1e-4). The seed CNN is
rebuilt as torch.nn modules; the others are run node by node with
torch.nn.functional (recurrent nodes as torch.nn's LSTM, GRU and RNN).

    onnx_check.py OUT_DIR      exit 0: pass, 1: fail, 77: skipped (no onnx/torch)
"""
import json
import math
import sys

try:
    import numpy as np
    import onnx
    import torch
    import torch.nn.functional as F
    from onnx import numpy_helper
except ImportError as e:
    print(f"SKIP: the ONNX check needs Debian's python3-onnx and python3-torch ({e})")
    sys.exit(77)

TOLERANCE = 1e-4


def load_case(out_dir, name, case):
    model = onnx.load(f"{out_dir}/{name}.onnx")
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    # Several outputs: glassbox's packed output holds them flattened one after another.
    shapes = [[d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in inferred.graph.output]
    dims = shapes[0] if len(shapes) == 1 else ["batch", sum(math.prod(s[1:]) for s in shapes)]
    expected = ["batch"] + case["output_shape"][1:]
    if dims != expected or any(s[0] != "batch" for s in shapes):
        raise AssertionError(f"{name}: inferred output shapes {shapes}, expected {expected}")
    node_names = {n.name for n in model.graph.node}
    # A Graph layer has no node of its own: its nodes are "<graph>.<node>", and the metadata names it.
    graphs = {g for p in model.metadata_props if p.key == "glassbox.graphs" for g in p.value.split("\n")}
    missing = [layer for layer in case["layers"]
               if layer not in node_names
               and not (layer in graphs and any(n.startswith(layer + ".") for n in node_names))]
    if missing:
        raise AssertionError(f"{name}: layers without a node of their name: {missing}")
    weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in model.graph.initializer}
    x = np.fromfile(f"{out_dir}/{name}.in.f32", dtype="<f4").reshape(case["input_shape"])
    y = np.fromfile(f"{out_dir}/{name}.out.f32", dtype="<f4").reshape(case["output_shape"])
    return model, weights, torch.from_numpy(x), y


def seed_cnn(weights):
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(5408, 10))
    with torch.no_grad():
        net[0].weight.copy_(weights["conv2d_1.weight"])
        net[0].bias.copy_(weights["conv2d_1.bias"])
        net[4].weight.copy_(weights["dense_1.weight"])
        net[4].bias.copy_(weights["dense_1.bias"])
    return net.eval()


def attributes(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def pad_2d(x, pads, value):
    top, left, bottom, right = pads
    return F.pad(x, (left, right, top, bottom), value=value)


def recurrent(op, a, i):
    """An ONNX LSTM / GRU / RNN node (forward, time-major) as the torch.nn module
    with its gates put back in PyTorch's order; returns Y (T, 1, N, H) and Y_h."""
    w, r, b = i[1][0], i[2][0], i[3][0]
    hidden = a["hidden_size"]
    # PyTorch's blocks from ONNX's: LSTM i f g o from i o f c, GRU r z n from z r h.
    order = {"LSTM": [0, 2, 3, 1], "GRU": [1, 0, 2], "RNN": [0]}[op]
    if op == "GRU":
        assert a.get("linear_before_reset") == 1
    def blocks(t):
        return torch.cat([t[g * hidden:(g + 1) * hidden] for g in order])
    module = {"LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU, "RNN": torch.nn.RNN}[op](w.shape[1], hidden)
    with torch.no_grad():
        module.weight_ih_l0.copy_(blocks(w))
        module.weight_hh_l0.copy_(blocks(r))
        module.bias_ih_l0.copy_(blocks(b[:len(order) * hidden]))
        module.bias_hh_l0.copy_(blocks(b[len(order) * hidden:]))
    y, state = module(i[0])
    h = state[0] if op == "LSTM" else state
    return [y.unsqueeze(1), h]


def run_graph(model, weights, x):
    """Evaluates the graph node by node with torch functions."""
    values = dict(weights)
    offset = 0  # several inputs arrive packed, each sample's flattened one after another
    for i in model.graph.input:
        sample = [d.dim_value for d in i.type.tensor_type.shape.dim][1:]
        size = math.prod(sample)
        values[i.name] = x.reshape(x.shape[0], -1)[:, offset:offset + size].reshape(x.shape[0], *sample)
        offset += size
    for node in model.graph.node:
        a = attributes(node)
        i = [values[name] for name in node.input]
        op = node.op_type
        if op == "Conv":
            y = F.conv2d(pad_2d(i[0], a["pads"], 0.0), i[1], i[2] if len(i) > 2 else None,
                         stride=a["strides"], dilation=a["dilations"])
        elif op == "MaxPool":
            y = F.max_pool2d(pad_2d(i[0], a["pads"], -math.inf), a["kernel_shape"], a["strides"])
        elif op == "AveragePool":
            if a.get("count_include_pad", 0) or not any(a["pads"]):
                y = F.avg_pool2d(pad_2d(i[0], a["pads"], 0.0), a["kernel_shape"], a["strides"])
            else:
                summed = F.avg_pool2d(pad_2d(i[0], a["pads"], 0.0), a["kernel_shape"], a["strides"], divisor_override=1)
                ones = pad_2d(torch.ones_like(i[0][:1, :1]), a["pads"], 0.0)
                y = summed / F.avg_pool2d(ones, a["kernel_shape"], a["strides"], divisor_override=1)
        elif op == "GlobalAveragePool":
            y = i[0].mean(dim=(2, 3), keepdim=True)
        elif op == "Flatten":
            y = torch.flatten(i[0], start_dim=a["axis"])
        elif op == "Identity":
            y = i[0]
        elif op == "Reshape":
            y = i[0].reshape([i[0].shape[k] if d == 0 else d for k, d in enumerate(i[1].tolist())])
        elif op == "Gemm":
            assert a.get("transB") == 1 and not a.get("transA")
            y = F.linear(i[0], i[1], i[2] if len(i) > 2 else None)
        elif op == "BatchNormalization":
            y = F.batch_norm(i[0], i[3], i[4], i[1], i[2], training=False, eps=a["epsilon"])
        elif op == "Relu":
            y = F.relu(i[0])
        elif op == "LeakyRelu":
            y = F.leaky_relu(i[0], a["alpha"])
        elif op == "Sigmoid":
            y = torch.sigmoid(i[0])
        elif op == "Tanh":
            y = torch.tanh(i[0])
        elif op == "Softmax":
            y = F.softmax(i[0], dim=a["axis"])
        elif op == "Erf":
            y = torch.erf(i[0])
        elif op in ("Add", "Mul", "Div"):
            y = {"Add": torch.add, "Mul": torch.mul, "Div": torch.div}[op](i[0], i[1])
        elif op == "Sum":
            y = sum(i[1:], i[0])
        elif op == "Concat":
            y = torch.cat(i, dim=a["axis"])
        elif op == "LogSoftmax":
            y = F.log_softmax(i[0], dim=a["axis"])
        elif op == "Transpose":
            y = i[0].permute(*a["perm"])
        elif op == "Squeeze":
            y = i[0].squeeze(int(i[1][0]))
        elif op in ("LSTM", "GRU", "RNN"):
            for name, value in zip(node.output, recurrent(op, a, i)):
                if name:
                    values[name] = value
            continue
        else:
            raise AssertionError(f"node {node.name}: op {op} not handled by this check")
        values[node.output[0]] = y
    outputs = [values[o.name] for o in model.graph.output]
    return outputs[0] if len(outputs) == 1 else torch.cat([o.flatten(1) for o in outputs], 1)


def main(out_dir):
    with open(f"{out_dir}/cases.json") as f:
        cases = json.load(f)
    failed = False
    for name, case in cases.items():
        model, weights, x, y = load_case(out_dir, name, case)
        with torch.no_grad():
            if name == "seed_cnn":
                got = seed_cnn(weights)(x).numpy()
            else:
                got = run_graph(model, weights, x).numpy()
        diff = float(np.max(np.abs(got - y)))
        ok = diff < TOLERANCE and float(np.max(np.abs(y))) > 0
        failed = failed or not ok
        print(f"{name}: opset {model.opset_import[0].version}, {len(model.graph.node)} nodes, checker and strict "
              f"shape inference pass; PyTorch from the initializers vs glassbox on {x.shape[0]} inputs: "
              f"max abs difference {diff:.3g} ({'ok' if ok else 'FAIL'}, limit {TOLERANCE})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
