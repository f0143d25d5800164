#!/bin/sh
# Runs every repro of the upgrade review; each prints PASS (contract holds) or FAIL last.
cd "$(dirname "$0")"
PY=../../../../.venv/bin/python
for f in r0*.py; do
    echo "== $f"
    timeout 150 "$PY" "$f" 2>/dev/null | tail -n 1
done
