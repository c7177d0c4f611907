#!/usr/bin/env bash
# Runs the glassbox benchmarks and their PyTorch references in one go and
# prints samples/s and the ratio glassbox / PyTorch per measurement.
#   bench/compare.sh [SAMPLES]
# Installs Debian's python3-torch and OpenBLAS for the reference column.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh bench || echo "compare.sh: continuing without the missing packages" >&2
build=build/bench
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DGLASSBOX_BUILD_BENCH=ON -DGLASSBOX_BUILD_TESTS=OFF \
  -DGLASSBOX_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" --target bench_mlp -j "$(nproc)" >/dev/null
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

ours=$("$build/bench/bench_mlp" "$@")
echo "$ours" | head -1
if /usr/bin/python3 -c "import torch" 2>/dev/null; then
  # This machine's OPENBLAS_CORETYPE/L2_SIZE pin an older, slower kernel: unset for the reference only.
  theirs=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 bench/torch_mlp.py "$@")
  echo "$theirs" | head -1
else
  theirs=""
  echo "(python3-torch not installed: no reference column)"
fi
printf '%-24s %14s %14s %8s\n' measurement glassbox pytorch ratio
echo "$ours" | awk '$1 == "glassbox" {print $2, $3, $4}' | while read -r model what rate; do
  ref=$(echo "$theirs" | awk -v m="$model" -v w="$what" '$1 == "torch" && $2 == m && $3 == w {print $4}')
  if [[ -n "$ref" ]]; then
    printf '%-24s %14s %14s %8s\n' "$model $what" "$rate" "$ref" "$(awk -v a="$rate" -v b="$ref" 'BEGIN {printf "%.2f", a / b}')"
  else
    printf '%-24s %14s %14s %8s\n' "$model $what" "$rate" "-" "-"
  fi
done
