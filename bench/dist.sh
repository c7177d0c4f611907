#!/usr/bin/env bash
# Data-parallel scaling of the seed CNN on this machine (bench/dist.cpp):
# samples/s of 1 rank and of 2 ranks with one thread each, and of one process
# with 2 threads (plain fit, no MPI collectives); the scaling efficiency and
# the share of step time spent waiting for the gradient allreduce. Each way
# runs ROUNDS times in turns; the best run of each counts.
#   bench/dist.sh [ROUNDS]        (3)
set -euo pipefail
unset CDPATH
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh mpi
build=build/bench
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DGLASSBOX_BUILD_BENCH=ON -DGLASSBOX_BUILD_TESTS=OFF \
  -DGLASSBOX_BUILD_EXAMPLES=OFF -DGLASSBOX_FMT_HEADER_ONLY=OFF >/dev/null
cmake --build "$build" --target bench_dist -j "$(nproc)" >/dev/null
rounds=${1:-3}
bin="$build/bench/bench_dist"
mpirun=(mpirun --oversubscribe --allow-run-as-root)
echo "machine: $(nproc) cores; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
out=""
for ((r = 0; r < rounds; ++r)); do
  out+=$(GLASSBOX_NUM_THREADS=1 "${mpirun[@]}" -np 1 "$bin" 32 | sed 's/^/r1 /')$'\n'
  out+=$(GLASSBOX_NUM_THREADS=1 "${mpirun[@]}" -np 2 "$bin" 32 | sed 's/^/r2 /')$'\n'
  out+=$(GLASSBOX_NUM_THREADS=1 "${mpirun[@]}" -np 2 "$bin" 16 | sed 's/^/r2g32 /')$'\n'
  out+=$(GLASSBOX_NUM_THREADS=2 "$bin" --plain 32 | sed 's/^/p2 /')$'\n'
done
echo "$out"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$out" | awk '$2 == "glassbox" { if ($11 > best[$1]) { best[$1] = $11; wait[$1] = $13 } }
  END {
    printf "%-44s %10s %8s\n", "way", "samples/s", "waiting"
    printf "%-44s %10.0f %8s\n", "1 rank, 1 thread, batch 32", best["r1"], "-"
    printf "%-44s %10.0f %7.1f%%\n", "2 ranks, 1 thread each, batch 32 per rank", best["r2"], 100 * wait["r2"]
    printf "%-44s %10.0f %7.1f%%\n", "2 ranks, 1 thread each, batch 16 per rank", best["r2g32"], 100 * wait["r2g32"]
    printf "%-44s %10.0f %8s\n", "1 process, 2 threads, batch 32 (no MPI)", best["p2"], "-"
    printf "2 ranks vs 1 rank (goal >= 1.8x): %.2fx; vs 1 process with 2 threads: %.2fx\n", best["r2"] / best["r1"], best["r2"] / best["p2"]
  }'
