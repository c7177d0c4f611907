"""Timing loop shared by the PyTorch references, mirroring bench_util.hpp:
training samples/s at batch 32 and 128 (forward, cross-entropy, backward, Adam
step over contiguous batches) and inference samples/s at batch 256, each the
median of 5 runs after a warm-up. Threads: GLASSBOX_NUM_THREADS or all cores,
with one OpenBLAS thread (PERF_NOTES: two pools on two cores fight), PyTorch's
best setting here; TORCH_DEFAULTS=1 leaves PyTorch's own defaults instead and
labels the lines "torch-default"."""
import os
import statistics
import time

DEFAULTS = os.environ.get("TORCH_DEFAULTS") == "1"
if not DEFAULTS:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import torch  # noqa: E402

TAG = "torch-default" if DEFAULTS else "torch"
if not DEFAULTS and os.environ.get("TORCH_MKLDNN") != "1":
    # Debian's oneDNN convolution takes ~11 ms per seed-CNN batch here, against
    # ~0.3 ms for PyTorch's native kernel: the best setting turns it off.
    torch.backends.mkldnn.enabled = False


def median_seconds(run, repeats=5):
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_classifier(name, make_model, sample_shape, n):
    if not DEFAULTS:
        torch.set_num_threads(int(os.environ.get("GLASSBOX_NUM_THREADS", os.cpu_count())))
    torch.manual_seed(0)
    x = torch.rand(n, *sample_shape)
    y = torch.randint(0, 10, (n,))
    print(f"{TAG} {torch.__version__}, threads {torch.get_num_threads()}, samples {n}")
    for batch in (32, 128):
        model = make_model()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = torch.nn.CrossEntropyLoss()

        def epoch():
            for start in range(0, n - batch + 1, batch):
                opt.zero_grad(set_to_none=True)
                loss_fn(model(x[start:start + batch]), y[start:start + batch]).backward()
                opt.step()

        print(f"{TAG} {name} train_b{batch} {n // batch * batch / median_seconds(epoch):.0f} samples/s")
    model = make_model().eval()

    def infer():
        with torch.no_grad():
            for start in range(0, n, 256):
                model(x[start:start + 256])

    print(f"{TAG} {name} infer_b256 {n / median_seconds(infer):.0f} samples/s")
