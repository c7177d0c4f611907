#!/usr/bin/env bash
# What hooks cost: one epoch of the seed CNN with no hooks, with ActivationStats
# + GradientFlow every step and every 50 steps (one process, the ways taking
# turns of 25 steps; its "ratio" lines are medians of per-round ratios), and
# with the hook checks compiled out (a second build, run alternately with the
# first; the table at the end compares the best of each way over both passes).
#   bench/hooks.sh [MNIST_DIR] [ROUNDS]
set -euo pipefail
unset CDPATH
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh build
build=build/bench
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DGLASSBOX_BUILD_BENCH=ON -DGLASSBOX_BUILD_TESTS=OFF \
  -DGLASSBOX_BUILD_EXAMPLES=OFF -DGLASSBOX_FMT_HEADER_ONLY=OFF >/dev/null
cmake --build "$build" --target bench_hooks bench_hooks_compiled_out -j "$(nproc)" >/dev/null
dir=${1:-data/mnist}
rounds=${2:-3}
echo "machine: $(nproc) cores; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
out=""
for pass in 1 2; do
  out+=$("$build/bench/bench_hooks" "$dir" "$rounds")$'\n'
  out+=$("$build/bench/bench_hooks_compiled_out" "$dir" "$rounds")$'\n'
done
echo "$out"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
# Best of the two passes per way (the other core's load only ever slows a run down).
echo "$out" | awk '$1 == "glassbox" { if ($4 > best[$3]) best[$3] = $4 }
  END {
    base = best["no_hooks"]
    printf "%-24s %12s %8s\n", "way", "samples/s", "vs none"
    for (w in best) printf "%-24s %12.0f %8.3f\n", w, best[w], best[w] / base
  }' | sort
