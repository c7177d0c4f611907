#!/bin/sh
# ctest's onnx_export: export with glassbox, check with onnx and PyTorch.
#   onnx_test.sh ONNX_EXPORT_PROGRAM MNIST_DIR OUT_DIR     (exit 77: skipped)
set -e
rm -rf "$3" && mkdir -p "$3"
"$1" "$3" "$2"
if [ ! -x /usr/bin/python3 ]; then
  echo "SKIP: /usr/bin/python3 is missing (scripts/setup.sh tests installs python3-onnx and python3-torch)"
  exit 77
fi
exec /usr/bin/python3 "$(dirname "$0")/onnx_check.py" "$3"
