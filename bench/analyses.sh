#!/usr/bin/env bash
# What the analyses of inspect/ cost (bench/analyses.cpp: PCA, t-SNE, the
# decision-boundary grid, activation patching, ablation, decision paths), and
# scikit-learn's TSNE on the same t-SNE input in the same run, for a ratio.
#   bench/analyses.sh [MNIST_DIR]
# Installs Debian's python3-sklearn for the reference (setup.sh bench).
set -euo pipefail
unset CDPATH
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh bench || echo "analyses.sh: continuing without the missing packages" >&2
dir=${1:-data/mnist}
[[ -f "$dir/t10k-images-idx3-ubyte" ]] || scripts/fetch_mnist.sh
build=build/bench
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DGLASSBOX_BUILD_BENCH=ON -DGLASSBOX_BUILD_TESTS=OFF \
  -DGLASSBOX_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" --target bench_analyses -j "$(nproc)" >/dev/null
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
results=$("$build/bench/bench_analyses" "$dir" "$build")
echo "$results"
if /usr/bin/python3 -c "import sklearn" 2>/dev/null; then
  reference=$(/usr/bin/python3 bench/sklearn_tsne.py "$build/tsne_input.txt")
  echo "$reference"
  ours=$(echo "$results" | awk '$2 == "analyses" && $3 == "tsne" {print $4}')
  theirs=$(echo "$reference" | awk '$2 == "analyses" && $3 == "tsne" {print $4}')
  awk -v a="$ours" -v b="$theirs" 'BEGIN {printf "t-SNE of 2,000 points: glassbox %.2f s, scikit-learn %.2f s: %.2fx as fast\n", a, b, b / a}'
else
  echo "(python3-sklearn not installed: no reference)"
fi
