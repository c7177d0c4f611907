#!/usr/bin/env bash
# What the main job costs besides its speed: the compile times a user sees
# (scripts/demo.sh's first build of mnist_cnn, and its rebuild after the
# example is edited; with the precompiled instances, as demo.sh builds, and
# without), and the main job's peak resident memory beside the MNIST tensors
# it holds (bench/compare.sh reports the benchmarks' own).
#   bench/footprint.sh [MNIST_DIR] [EPOCHS]
set -euo pipefail
unset CDPATH
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh build
dir=${1:-data/mnist}
epochs=${2:-5}
[[ -d $dir ]] || { echo "footprint.sh: no $dir: using the shipped subset" >&2; dir=tests/data/mnist-subset; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}'; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for precompiled in ON OFF; do
  build=build/footprint-$precompiled
  rm -rf "$build"
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DGLASSBOX_BUILD_TESTS=OFF -DGLASSBOX_BUILD_EXAMPLES=ON \
    -DGLASSBOX_FMT_HEADER_ONLY=OFF -DGLASSBOX_PRECOMPILED=$precompiled >/dev/null
  start=$(now)
  cmake --build "$build" --target mnist_cnn -j "$(nproc)" >/dev/null
  first=$(since "$start")
  touch examples/mnist_cnn.cpp
  start=$(now)
  cmake --build "$build" --target mnist_cnn -j "$(nproc)" >/dev/null
  echo "compile (precompiled instances $precompiled): first build ${first} s, rebuild after editing the example $(since "$start") s"
done
run=$(mktemp -d)
build/footprint-ON/examples/mnist_cnn "$dir" "$epochs" "$run/run" 2>/dev/null | grep -E "^(MNIST from|Training took|Peak memory)"
rm -rf "$run"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
