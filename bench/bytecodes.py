"""python -m bench.bytecodes [--requests N] [--connections N] [--src DIR] [--top N] [--json FILE]

Python bytecodes per S1 request (and per TLS connection, S7c's), by function, of one mpm
worker: where `python -m bench.instructions`'s count goes, function by function.  About half
of a small request's instructions are the interpreter's own loop (callgrind: 55,483 of 111,442
in _PyEval_EvalFrameDefault, 2026-12-04), so the bytecodes a function runs are most of what it
costs, and they repeat exactly from run to run.  About 30 s, where callgrind takes 3 minutes.

How: mpm starts through this module, which wraps `worker.loop.EventLoop.run` in a
`sys.settrace` that counts opcode events per function (`f_trace_opcodes`) and writes them
out when the loop ends; the client sends one request at a time on one keep-alive connection,
as bench.instructions does.  Each figure is the difference between a run with few and one
with many units, divided by the difference, so start-up, shutdown and the master cancel out.
The counts say what runs, not what each bytecode costs: a call into C (a send, a parse in
worker/_heads.c) is one bytecode here.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from bench import procs
from bench.certs import make_cert
from bench.instructions import _config, _http, _tls, wait_until_serving
from bench.runner import start_backend

HERE = os.path.dirname(os.path.abspath(__file__))


def _serve(outdir: str, argv: list[str]) -> None:
    """Run mpm with every EventLoop.run traced (in the worker after the fork, too)."""
    import runpy

    from worker import loop as loop_module
    original = loop_module.EventLoop.run

    def traced_run(self) -> None:
        counts: collections.Counter = collections.Counter()

        def tracer(frame, event, arg):
            frame.f_trace_opcodes = True
            frame.f_trace_lines = False
            if event == "opcode":
                code = frame.f_code
                counts[f"{os.path.relpath(code.co_filename)}:{code.co_firstlineno} {code.co_name}"] += 1
            return tracer
        sys.settrace(tracer)
        try:
            original(self)
        finally:
            sys.settrace(None)
            with open(os.path.join(outdir, f"bytecodes.{os.getpid()}.json"), "w") as f:
                json.dump(counts, f)
    loop_module.EventLoop.run = traced_run
    sys.argv = ["mpm", *argv]
    runpy.run_module("mpm", run_name="__main__", alter_sys=True)


def _run(src: str, workdir: str, backend: int, kind: str, count: int) -> collections.Counter:
    """Bytecodes by function over a whole run of `count` units (the master's and the worker's)."""
    out = tempfile.mkdtemp(prefix=f"{kind}-{count}-", dir=workdir)
    port = procs.free_port()
    tls = kind == "tls"
    command = [procs.python(), "-m", "bench.bytecodes", "--serve", out, "start", "-c",
               _config(workdir, port, backend, tls, False)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.path.dirname(HERE)]))
    proc = subprocess.Popen(command, cwd=src, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_serving(proc, port, tls, 60, "mpm with the bytecode counter")
        _tls(port, count, True) if tls else _http(port, count)
    finally:
        procs.stop(proc, timeout=60)
    totals: collections.Counter = collections.Counter()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(os.listdir(out)) < 2:     # the worker writes as it exits
        time.sleep(0.1)
    for name in os.listdir(out):
        with open(os.path.join(out, name)) as f:
            totals.update(json.load(f))
    return totals


def measure(src: str, kind: str, count: int) -> dict:
    workdir = tempfile.mkdtemp(prefix="mpm-bytecodes-")
    backend_proc, backend = start_backend(workdir, 1)
    make_cert(workdir, "ec")
    try:
        few = max(count // 5, 1)
        low = _run(src, workdir, backend, kind, few)
        high = _run(src, workdir, backend, kind, count + few)
        per_unit = {name: (high[name] - low.get(name, 0)) / count for name in high}
        per_unit = {name: round(value, 1) for name, value in per_unit.items() if value >= 0.5}
        return {"kind": kind, "count": count, "total": round(sum(per_unit.values())),
                "by_function": dict(sorted(per_unit.items(), key=lambda item: -item[1]))}
    finally:
        procs.stop(backend_proc)
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        _serve(argv[1], argv[2:])
        return 0
    ap = argparse.ArgumentParser(prog="python -m bench.bytecodes", description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=2000, help="S1 requests counted (default 2000; 0: none)")
    ap.add_argument("--connections", type=int, default=0, help="TLS connections counted, resumed (default 0)")
    ap.add_argument("--src", default=os.path.dirname(HERE), help="checkout whose mpm is measured (default: this one)")
    ap.add_argument("--top", type=int, default=40, help="functions shown (default 40)")
    ap.add_argument("--json", help="also write every function's figure to this file")
    opts = ap.parse_args(argv)
    results = [measure(os.path.abspath(opts.src), kind, count)
               for kind, count in (("http", opts.requests), ("tls", opts.connections)) if count]
    for result in results:
        unit = "request" if result["kind"] == "http" else "resumed TLS connection"
        print(f"{result['total']:,} bytecodes per {unit} ({result['count']} counted)")
        for name, value in list(result["by_function"].items())[:opts.top]:
            print(f"  {value:8.1f}  {name}")
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
