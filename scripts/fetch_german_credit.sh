#!/usr/bin/env bash
# Fills data/german-credit/ with credit-g.arff, the UCI Statlog German credit
# data (1,000 applicants, 20 attributes, good or bad credit risk; CC BY 4.0,
# Hofmann 1994), as Debian's weka package ships it in its examples, or from a
# directory that holds credit-g.arff already.
#   scripts/fetch_german_credit.sh [DIR]
# Only the package file is downloaded (apt-get download), nothing is
# installed. Checks the file's SHA-256; never leaves a half-written folder.
set -euo pipefail
unset CDPATH
root=$(cd "$(dirname "$0")/.." && pwd -P)
dest="$root/data/german-credit"
file=credit-g.arff
sha256=bd94085134e4eb845c96b34c93ed65a223f89d089bacb273ef96f57509ce0bed
matches() { [[ -f "$1" ]] && echo "$sha256  $1" | sha256sum --check --status; }
matches "$dest/$file" && [[ $# -eq 0 ]] && exit 0

tmp="$dest.tmp.$$"
rm -rf "$tmp" && mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
if [[ $# -ge 1 ]]; then
  cp "$1/$file" "$tmp/$file" 2>/dev/null || { echo "fetch_german_credit.sh: no $file in '$1'" >&2; exit 1; }
else
  # apt-get download needs the package lists; a fresh machine may have none.
  if ! (cd "$tmp" && apt-get download -qq weka >/dev/null 2>&1); then
    [[ $(id -u) -eq 0 ]] && apt-get update -qq
    (cd "$tmp" && apt-get download -qq weka >/dev/null) ||
      { echo "fetch_german_credit.sh: could not download Debian's weka package" >&2; exit 1; }
  fi
  dpkg-deb --fsys-tarfile "$tmp"/weka_*.deb | tar -xO "./usr/share/doc/weka/examples/$file" >"$tmp/$file"
  rm -f "$tmp"/weka_*.deb
fi
if ! matches "$tmp/$file"; then
  echo "fetch_german_credit.sh: $file is not the expected file (SHA-256 differs)" >&2
  exit 1
fi
rm -rf "$dest" && mv "$tmp" "$dest"
trap - EXIT
echo "fetch_german_credit.sh: the German credit data is in $dest" >&2
