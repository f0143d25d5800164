#!/bin/sh
# Runs every repro once, from the reviewer clone; outputs go to stdout.
cd "$(dirname "$0")/../../../.." || exit 1
PY=/work/main/.venv/bin/python
for f in docs/reviews/2026-12-04-h2-downgrade/repro/r0*.py docs/reviews/2026-12-04-h2-downgrade/repro/checked/c0*.py; do
    echo "##### $f"
    timeout 200 $PY "$f" 2>&1
    echo "##### rc=$?"
done
