#!/usr/bin/env bash
# Installs the Debian packages glassbox needs, only those missing.
#   scripts/setup.sh [build] [tests] [mpi] [npm] [bench] [fuzz] [fashion]     (no argument: build)
# As root it runs apt-get; otherwise it names the packages to install.
set -euo pipefail

declare -A groups=(
  [build]="cmake g++ make libeigen3-dev libfmt-dev libpng-dev"
  # python3-onnx and python3-torch check the ONNX export (tests/onnx_check.py).
  # Open MPI runs the data-parallel tests (glassbox::dist) under mpirun.
  # python3-html5lib checks that report.html parses as valid HTML.
  [tests]="cmake g++ make libeigen3-dev libfmt-dev libpng-dev catch2 graphviz chromium python3-onnx python3-torch python3-html5lib
           libopenmpi-dev openmpi-bin"
  [mpi]="cmake g++ make libeigen3-dev libfmt-dev libpng-dev libopenmpi-dev openmpi-bin"
  [fuzz]="cmake clang libclang-rt-14-dev libeigen3-dev libfmt-dev"
  [fashion]="dataset-fashion-mnist"
  [npm]="npm ca-certificates"
  # Debian's PyTorch uses whatever libblas.so.3 is selected: without OpenBLAS it
  # is the reference BLAS, some 50x slower, and the benchmark ratios mean nothing.
  # scikit-learn: the t-SNE reference of bench/analyses.sh.
  [bench]="cmake g++ make libeigen3-dev libfmt-dev libpng-dev python3-torch python3-sklearn libopenblas0-pthread"
)
wanted=""
for group in "${@:-build}"; do
  [[ -n "${groups[$group]:-}" ]] || { echo "setup.sh: unknown group '$group' (build, tests, mpi, npm, bench, fuzz, fashion)" >&2; exit 2; }
  # An npm installed outside Debian's packages (nodesource, nvm) serves as well;
  # Debian's npm package would conflict with its nodejs.
  [[ "$group" == npm ]] && command -v npm >/dev/null && continue
  wanted="$wanted ${groups[$group]}"
done

missing=""
for pkg in $wanted; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
[[ -z "$missing" ]] && exit 0

if [[ $(id -u) -ne 0 ]]; then
  echo "setup.sh: missing Debian packages:$missing" >&2
  echo "          install them as root: apt-get install$missing" >&2
  exit 1
fi
echo "setup.sh: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
