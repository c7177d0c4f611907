#!/usr/bin/env bash
# Fills data/fashion-mnist/ with the four Fashion-MNIST IDX files, from
# Debian's dataset-fashion-mnist (installed when missing, as root) or from a
# directory of IDX files (plain or .gz) you already have.
#   scripts/fetch_fashion_mnist.sh [DIR]
# Same file names and sizes as MNIST's. Never leaves a half-written folder.
set -euo pipefail
unset CDPATH
root=$(cd "$(dirname "$0")/.." && pwd -P)
dest="$root/data/fashion-mnist"
# shellcheck source=idx_files.sh
source "$root/scripts/idx_files.sh"
idx_complete "$dest" && [[ $# -eq 0 ]] && exit 0

if [[ $# -ge 1 ]]; then
  src=$1
else
  "$root/scripts/setup.sh" fashion
  src=/usr/share/datasets/fashion-mnist
fi
tmp="$dest.tmp.$$"
rm -rf "$tmp" && mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
for f in "${!idx_sizes[@]}"; do
  if [[ -f "$src/$f" ]]; then
    cp "$src/$f" "$tmp/$f"
  elif [[ -f "$src/$f.gz" ]]; then
    gzip -dc "$src/$f.gz" >"$tmp/$f"
  else
    echo "fetch_fashion_mnist.sh: '$src' has neither $f nor $f.gz" >&2
    exit 1
  fi
done
if ! idx_complete "$tmp"; then
  echo "fetch_fashion_mnist.sh: the files in '$src' do not have Fashion-MNIST's sizes" >&2
  exit 1
fi
rm -rf "$dest" && mv "$tmp" "$dest"
trap - EXIT
echo "fetch_fashion_mnist.sh: Fashion-MNIST is in $dest" >&2
