#!/bin/sh
# README line 1 in a fresh clone; then demo_ws_echo.py against the URL it prints; stop with kill -INT <demo pid>.
set -e
rm -rf /tmp/rev-readme/clone && git clone -q /work/main /tmp/rev-readme/clone && cd /tmp/rev-readme/clone
timeout 600 sh -c 'python3 -m venv .venv && .venv/bin/pip install -q . && exec .venv/bin/python -m demo' \
    > /tmp/rev-readme/demo.out 2> /tmp/rev-readme/demo.err &
echo "timeout pid $!"
