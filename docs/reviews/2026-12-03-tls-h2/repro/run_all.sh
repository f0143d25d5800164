#!/bin/sh
# Runs every repro (and the checked/ scripts) twice, appending to RUNS.txt.
cd "$(dirname "$0")"
PY=${PY:-/work/main/.venv/bin/python}
for run in 1 2; do
  for f in r0*.py checked/c0*.py; do
    echo "===== $f  (run $run, $(date -u +%H:%M:%S) UTC)" >> RUNS.txt
    timeout 120 "$PY" "$f" >> RUNS.txt 2>&1
    echo "----- exit $?" >> RUNS.txt
  done
done
