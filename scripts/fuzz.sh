#!/usr/bin/env bash
# Fuzzes glassbox's readers with libFuzzer (clang, ASan + UBSan) for a bounded
# time each: the IDX reader, the checkpoint loader and the ONNX importer (fuzz/*.cpp).
#   scripts/fuzz.sh [SECONDS=60] [TARGET...]      (targets: idx checkpoint onnx)
# Each run starts from tests/data/fuzz/seeds/TARGET plus what earlier runs
# found (build/fuzz/corpus/TARGET). A crash, leak, timeout or allocation past
# the limits leaves its input in build/fuzz/artifacts/TARGET and fails the
# script: fix the reader, then commit the input to
# tests/data/fuzz/regressions/TARGET, where ctest replays it (fuzz_regressions).
set -euo pipefail
unset CDPATH
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
seconds=${1:-60}
shift || true
targets=("${@:-idx checkpoint onnx}")
# shellcheck disable=SC2206
targets=(${targets[*]})
scripts/setup.sh fuzz

out=build/fuzz
mkdir -p "$out"
status=0
for target in "${targets[@]}"; do
  [[ -f fuzz/fuzz_$target.cpp ]] || { echo "fuzz.sh: no target '$target' (idx, checkpoint, onnx)" >&2; exit 2; }
  binary=$out/fuzz_$target
  if [[ ! -x $binary || fuzz/fuzz_$target.cpp -nt $binary || -n $(find include -newer "$binary" -name '*.hpp' | head -1) ]]; then
    echo "fuzz.sh: building $binary" >&2
    clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
      -DFMT_HEADER_ONLY -Iinclude -isystem /usr/include/eigen3 "fuzz/fuzz_$target.cpp" -o "$binary"
  fi
  corpus=$out/corpus/$target
  artifacts=$out/artifacts/$target
  mkdir -p "$corpus" "$artifacts"
  echo "fuzz.sh: $target for ${seconds}s" >&2
  # -malloc_limit_mb: any single allocation above it is a finding (a size
  # field trusted without a check); inputs are at most 64 KiB.
  inputs=("$corpus" "tests/data/fuzz/seeds/$target")
  [[ -d tests/data/fuzz/regressions/$target ]] && inputs+=("tests/data/fuzz/regressions/$target")
  if ! "$binary" "${inputs[@]}" \
    -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 2>"$out/$target.log"; then
    echo "fuzz.sh: $target FAILED; see $out/$target.log and $artifacts" >&2
    tail -40 "$out/$target.log" >&2
    status=1
  else
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$out/$target.log" | sed "s/^/fuzz.sh: $target: /" >&2
  fi
done
exit $status
