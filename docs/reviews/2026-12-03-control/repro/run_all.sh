#!/bin/sh
# Runs every repro in order (from the repository root), appending to RUNS.txt.
cd "$(dirname "$0")/../../../.." || exit 1
for f in docs/reviews/2026-12-03-control/repro/r*.py docs/reviews/2026-12-03-control/repro/checked/c*.py; do
  echo "== $f ($(git rev-parse --short HEAD), $(date -u +%H:%M:%S))"
  timeout 200 /work/main/.venv/bin/python "$f" 2>&1 | tail -20
done
