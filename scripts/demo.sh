#!/usr/bin/env bash
# The main job: fetch MNIST (or use DIR), build, train the seed CNN
# (Conv2D(32, 3x3, relu) -> MaxPool 2x2 -> Flatten -> Dense(10, softmax), Adam
# 1e-3, batch 32, 5 epochs) while recording activation statistics, gradient
# flow and saliency, print a per-layer table after each epoch and the test
# accuracy, and write the run to runs/seed_cnn-<date>-<time>/ (report.html,
# pictures, TensorBoard events, CSV and JSON); runs/latest points to it.
#   scripts/demo.sh [MNIST_DIR]
# When the full MNIST cannot be had, it trains on the 1,000-image subset that
# ships in tests/data/mnist-subset and says so.
set -euo pipefail
unset CDPATH
root=$(cd "$(dirname "$0")/.." && pwd)
user_dir=""
if [[ $# -ge 1 ]]; then
  user_dir=$(cd "$1" 2>/dev/null && pwd) || { echo "demo: no directory '$1'" >&2; exit 1; }
fi
cd "$root"
scripts/setup.sh build

data="$root/data/mnist"
if [[ -n "$user_dir" ]]; then
  scripts/fetch_mnist.sh "$user_dir"  # a directory the user names must be right: no fallback
elif ! scripts/fetch_mnist.sh; then
  data="$root/tests/data/mnist-subset"
  echo "demo: the full MNIST could not be fetched; training on the 1,000-image subset in" >&2
  echo "      tests/data/mnist-subset instead (expect a lower accuracy than the full set's ~98.5%)" >&2
fi

build="$root/build/release"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DGLASSBOX_BUILD_TESTS=OFF -DGLASSBOX_BUILD_EXAMPLES=ON \
  -DGLASSBOX_FMT_HEADER_ONLY=OFF >/dev/null  # links libfmt: a third faster to compile
cmake --build "$build" --target mnist_cnn -j "$(nproc)"
run="$root/runs/seed_cnn-$(date +%Y%m%d-%H%M%S)"
"$build/examples/mnist_cnn" "$data" 5 "$run"
ln -sfn "$run" "$root/runs/latest"
echo "demo: open $run/report.html (runs/latest points to this run)"
