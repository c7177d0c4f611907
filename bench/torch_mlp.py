#!/usr/bin/python3
"""PyTorch reference for bench/mlp.cpp: the same model, optimizer, batches and
sample count, timed the same way (median of 5 runs after a warm-up).
Threads as PERF_NOTES recommends: torch.set_num_threads(cores), one OpenBLAS thread."""
import os
import statistics
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import torch  # noqa: E402

n = int(sys.argv[1]) if len(sys.argv) > 1 else 8192
torch.set_num_threads(int(os.environ.get("GLASSBOX_NUM_THREADS", os.cpu_count())))
torch.manual_seed(0)
x = torch.rand(n, 784)
y = torch.randint(0, 10, (n,))
print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, samples {n}")


def mlp():
    return torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128),
                               torch.nn.ReLU(), torch.nn.Linear(128, 10))


def median_seconds(run, repeats=5):
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


for batch in (32, 128):
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    def epoch():
        for start in range(0, n - batch + 1, batch):
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x[start:start + batch]), y[start:start + batch]).backward()
            opt.step()

    s = median_seconds(epoch)
    print(f"torch mlp train_b{batch} {n // batch * batch / s:.0f} samples/s")

model = mlp().eval()


def infer():
    with torch.no_grad():
        for start in range(0, n, 256):
            model(x[start:start + 256])


print(f"torch mlp infer_b256 {n / median_seconds(infer):.0f} samples/s")
