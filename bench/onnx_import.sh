#!/usr/bin/env bash
# ONNX import: how long importing the seed CNN takes, and the imported model's
# inference speed next to the same model built in C++ (bench/onnx_import.cpp).
# With Debian's python3-torch the file is PyTorch's export (tests/onnx_import_models.py);
# without it, glassbox's own.
#   bench/onnx_import.sh
set -euo pipefail
unset CDPATH
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh build
build=build/bench
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DGLASSBOX_BUILD_BENCH=ON -DGLASSBOX_BUILD_TESTS=OFF \
  -DGLASSBOX_BUILD_EXAMPLES=OFF -DGLASSBOX_FMT_HEADER_ONLY=OFF >/dev/null
cmake --build "$build" --target bench_onnx_import -j "$(nproc)" >/dev/null
models=$build/onnx_models
if /usr/bin/python3 tests/onnx_import_models.py "$models" >/dev/null 2>&1; then
  "$build/bench/bench_onnx_import" "$models/seed_cnn.onnx"
else
  echo "(no python3-torch: glassbox's own export)"
  "$build/bench/bench_onnx_import"
fi
