#!/bin/sh
# ctest's onnx_import: PyTorch exports models, glassbox imports and compares.
#   onnx_import_test.sh ONNX_IMPORT_CHECK_PROGRAM OUT_DIR     (exit 77: skipped)
set -e
if [ ! -x /usr/bin/python3 ]; then
  echo "SKIP: /usr/bin/python3 is missing (scripts/setup.sh tests installs python3-onnx and python3-torch)"
  exit 77
fi
rm -rf "$2" && mkdir -p "$2"
/usr/bin/python3 "$(dirname "$0")/onnx_import_models.py" "$2"
exec "$1" "$2"
