#!/bin/sh
# Runs every repro against the tree it sits in; prints each one's output (PASS/FAIL last).
cd "$(dirname "$0")/../../../.." || exit 1
for f in docs/reviews/2026-12-03-reload/repro/r*.py; do
    echo "== $f"
    timeout 200 .venv/bin/python "$f" 2>&1 | grep -v '^  File \|^    \|ResourceWarning'
done
