#!/usr/bin/env bash
# ctest driver for dist_fault.cpp:
#   dist_fault.sh throw|nan WORK_DIR MPIRUN_COMMAND... PROGRAM MNIST_DIR
#   dist_fault.sh kill WORK_DIR MPIRUN_COMMAND... PROGRAM MNIST_DIR
# throw, nan: rank 1's fault must stop rank 0 with an error naming rank 1
# within seconds, and the job must end non-zero rather than hang.
# kill: rank 0, saving a checkpoint after every step, is killed at a random
# moment, three times; each time the job must end, and the checkpoint load.
set -u
mode=$1 work=$2
shift 2
program=${*: -2:1}
mkdir -p "$work"

run() {  # the job with a time limit: sets out, rc and elapsed
  local start
  start=$(date +%s)
  out=$(timeout 120 "$@" 2>&1)
  rc=$?
  elapsed=$(($(date +%s) - start))
  printf '%s\n' "$out"
  if [[ $rc -eq 124 ]]; then echo "dist_fault: the job hung (killed after 120 s)"; exit 1; fi
  if [[ $rc -eq 0 ]]; then echo "dist_fault: the job exited 0 despite the fault"; exit 1; fi
}

case $mode in
  throw | nan)
    run "$@" "$mode"
    expected="a deliberate fault at step 5"
    [[ $mode == nan ]] && expected="NanWatch: non-finite value nan in the output"
    if ! grep -q "rank 0: stopped: rank 1 failed: .*$expected" <<<"$out"; then
      echo "dist_fault: rank 0 did not stop with an error naming rank 1 ($expected)"; exit 1
    fi
    if ((elapsed > 30)); then echo "dist_fault: stopping took ${elapsed} s"; exit 1; fi
    echo "dist_fault ($mode): rank 0 stopped, naming rank 1, and the job ended (exit $rc) in ${elapsed} s"
    ;;
  kill)
    checkpoint=$work/checkpoint.gbck
    for round in 1 2 3; do
      rm -f "$checkpoint" "$checkpoint".tmp.*
      run "$@" kill "$checkpoint"
      if [[ ! -f $checkpoint ]]; then echo "dist_fault: no checkpoint written before the kill"; exit 1; fi
      "$program" --check "$checkpoint" || exit 1
      leftovers=$(find "$work" -name '*.tmp*' | wc -l)
      echo "round $round: the job ended (exit $rc) in ${elapsed} s; $leftovers temporary file(s) left"
    done
    echo "dist_fault (kill): the last checkpoint loaded each time"
    ;;
  *)
    echo "dist_fault.sh: unknown mode '$mode'"; exit 2
    ;;
esac
