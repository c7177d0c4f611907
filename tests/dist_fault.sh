#!/usr/bin/env bash
# ctest driver for dist_fault.cpp: `dist_fault.sh MPIRUN_COMMAND...` runs the
# job and checks that rank 1's fault stops rank 0 with an error naming rank 1
# within seconds, and that the job ends non-zero rather than hanging.
set -u
start=$(date +%s)
out=$(timeout 120 "$@" 2>&1)
rc=$?
elapsed=$(($(date +%s) - start))
printf '%s\n' "$out"
if [[ $rc -eq 124 ]]; then echo "dist_fault: the job hung (killed after 120 s)"; exit 1; fi
if [[ $rc -eq 0 ]]; then echo "dist_fault: the job exited 0 despite the fault"; exit 1; fi
if ! grep -q "rank 0: stopped: rank 1 failed: .*a deliberate fault at step 5" <<<"$out"; then
  echo "dist_fault: rank 0 did not stop with an error naming rank 1"; exit 1
fi
if ((elapsed > 30)); then echo "dist_fault: stopping took ${elapsed} s"; exit 1; fi
echo "dist_fault: rank 0 stopped, naming rank 1, and the job ended (exit $rc) in ${elapsed} s"
