#!/usr/bin/env bash
# Runs the glassbox benchmarks (MLP and seed CNN training and inference, int8
# inference of the seed CNN, and saliency/Integrated Gradients on the seed
# CNN) and their PyTorch references
# in one go and prints samples/s and the ratio glassbox / PyTorch, with
# PyTorch in its best setting here (threads = cores, one OpenBLAS thread) and,
# for reference, in its default setting. Beside each rate: the GEMM work it
# does per second (GFLOP/s; int8 rows: GOP/s) and that as a share of the
# machine's measured FMA peak (bench/peak.cpp), with its GEMM peak above.
#   bench/compare.sh [SAMPLES]
# Installs Debian's python3-torch and OpenBLAS for the reference columns.
set -euo pipefail
unset CDPATH
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh bench || echo "compare.sh: continuing without the missing packages" >&2
build=build/bench
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DGLASSBOX_BUILD_BENCH=ON -DGLASSBOX_BUILD_TESTS=OFF \
  -DGLASSBOX_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" --target bench_mlp bench_seed_cnn bench_saliency bench_int8 bench_peak -j "$(nproc)" >/dev/null
have_torch=0
/usr/bin/python3 -c "import torch" 2>/dev/null && have_torch=1

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
peaks=$("$build/bench/bench_peak")
echo "$peaks"
peak=$(echo "$peaks" | awk '$1 == "peak" && $2 == "fma" {print $3}')
results=""
for bench in mlp seed_cnn saliency int8; do
  args=("$@")
  [[ $bench == saliency ]] && args=()  # its argument is a data directory, not a sample count
  results+=$("$build/bench/bench_$bench" "${args[@]}")$'\n'
  if [[ $have_torch == 1 ]]; then
    # This machine's OPENBLAS_CORETYPE/L2_SIZE pin an older, slower kernel: unset for the reference only.
    # PyTorch allocates every intermediate anew; above glibc's mmap threshold each allocation costs page
    # faults (seed CNN training ~4x slower here), so its best setting keeps them on the heap.
    results+=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE MALLOC_MMAP_THRESHOLD_=4294967296 \
      MALLOC_TRIM_THRESHOLD_=4294967296 /usr/bin/python3 "bench/torch_$bench.py" "${args[@]}")$'\n'
    results+=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE TORCH_DEFAULTS=1 /usr/bin/python3 "bench/torch_$bench.py" "${args[@]}")$'\n'
  fi
done
[[ $have_torch == 1 ]] || echo "(python3-torch not installed: no reference columns)"
echo "$results" | grep -E '^(threads|torch [0-9]|torch-default [0-9])' | sort -u
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

# The ratio is against the faster of PyTorch's two settings. GFLOP/s counts
# the GEMM work of a sample ("flops" lines of the glassbox benchmarks).
flops_of() {  # MODEL WHAT -> FLOPs per sample
  local model=${1%_fp32} kind=${2%%_*}
  model=${model%_int8}
  echo "$results" | awk -v m="$model" -v k="$kind" '$1 == "flops" && $2 == m && $3 == k {print $4}'
}
gflops() { awk -v r="$1" -v f="$2" 'BEGIN {if (r == "" || f == "") print "-"; else printf "%.1f", r * f * 1e-9}'; }
share() { awk -v g="$1" -v p="$peak" 'BEGIN {if (g == "-" || p == "") print "-"; else printf "%.0f%%", 100 * g / p}'; }
printf '%-24s %10s %8s %6s %10s %8s %14s %7s\n' "samples/s, GFLOP/s" glassbox GFLOP/s peak pytorch GFLOP/s \
  "pytorch-default" ratio
echo "$results" | awk '$1 == "glassbox" {print $2, $3, $4}' | while read -r model what rate; do
  ref=$(echo "$results" | awk -v m="$model" -v w="$what" '$1 == "torch" && $2 == m && $3 == w {print $4}')
  def=$(echo "$results" | awk -v m="$model" -v w="$what" '$1 == "torch-default" && $2 == m && $3 == w {print $4}')
  flops=$(flops_of "$model" "$what")
  ratio="-"
  [[ -n "$ref" ]] && ratio=$(awk -v a="$rate" -v b="$ref" -v c="${def:-0}" 'BEGIN {printf "%.2f", a / (b > c ? b : c)}')
  best=$(awk -v b="${ref:-0}" -v c="${def:-0}" 'BEGIN {m = b > c ? b : c; if (m > 0) print m}')
  ours=$(gflops "$rate" "$flops")
  theirs=$(gflops "$best" "$flops")
  used=$(share "$ours")
  [[ $model == *_int8 ]] && used="-"  # int8 operations are not float FLOPs
  printf '%-24s %10s %8s %6s %10s %8s %14s %7s\n' "$model $what" "$rate" "$ours" "$used" "${ref:--}" "$theirs" \
    "${def:--}" "$ratio"
done
echo "$results" | grep '^memory' || true
echo "$results" | grep '^fusion' || true
