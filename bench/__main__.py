"""python -m bench [--quick | --tiny] [--peers direct,mpm,...] [--scenarios S1,S3,...] [--out DIR]

Runs the load benchmark (issue #5) and writes results.md, results.json and PNG plots to
bench/results/DATE-MODE/ (or --out). See bench/README.md for what each scenario measures.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys

from bench import report, runner, wsgen
from bench.peers import ALL, OPT_IN
from bench.scenarios import ORDER, expand

HERE = os.path.dirname(os.path.abspath(__file__))


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description="Reverse-proxy load benchmark: "
                                 "direct vs mpm vs nginx vs HAProxy vs Apache, same backend, same load.")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick",
                      help="short cells, one round, smaller S5/S6 (under 2 minutes)")
    mode.add_argument("--tiny", dest="mode", action="store_const", const="tiny",
                      help="smallest counts, for the test suite: checks that it runs, measures nothing useful")
    ap.set_defaults(mode="full")
    ap.add_argument("--peers", default=",".join(ALL), help=f"comma-separated, from {','.join(ALL)} "
                    f"(and {','.join(OPT_IN)}: the Python floor, bench/floor.py)")
    ap.add_argument("--scenarios", default=",".join(ORDER), help="comma-separated: S1..S7 (S7 = S7a, S7b, S7c, S7c-ec, S7c-12, S7c-reload)")
    ap.add_argument("--out", help="directory for the results (default bench/results/DATE-MODE)")
    ap.add_argument("--duration", type=float, help="seconds per cell (overrides the mode)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (overrides the mode)")
    ap.add_argument("--idle-conns", type=int, help="S5: idle WebSockets (overrides the mode)")
    ap.add_argument("--reload-conns", type=int, help="S6: streaming WebSockets (overrides the mode)")
    ap.add_argument("--reloads", type=int, help="S6: reloads during the stream (overrides the mode)")
    ap.add_argument("--backend-processes", type=int, default=1, help="processes of the bundled backend")
    ap.add_argument("--disturbed-threshold", type=float, default=0.25,
                    help="cores busy outside the run above which a cell is marked disturbed")
    ap.add_argument("--settle", type=float, help="before each cell, wait up to this many seconds for outside "
                    "load to pass (default: 10 in a full run, 0 otherwise)")
    ap.add_argument("--setup", action="store_true", help="run bench/setup first (installs missing peers and tools, "
                    "builds the C WebSocket load generator)")
    ap.add_argument("--ws-gen", choices=("auto", "c", "python"), default="auto",
                    help="WebSocket load generator: auto = C when gcc can build it (bench/wsgen.py), else Python")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir with configs and logs")
    ap.add_argument("--base", help="another checkout of mpm-proxy, measured as peer mpm-base beside mpm "
                    "(before/after in one run)")
    ap.add_argument("--base-python", help="the interpreter mpm-base runs under (default: this one); it needs "
                    "mpm-proxy's dependencies installed (with --base . : two interpreter builds, one code)")
    ap.add_argument("--mpm-extra", help="YAML appended to the generated config of peer mpm only (not mpm-base), "
                    "e.g. 'limits: {per_client: {connections: 5000, requests: {rate: 1000000}}}'")
    ap.add_argument("--base-access-log", action="store_true", help="mpm-base writes its access log to a file "
                    "(with --base . : the cost of the access log, in one run)")
    opts = ap.parse_args(argv)
    opts.peers = [p.strip() for p in opts.peers.split(",") if p.strip()]
    unknown = [p for p in opts.peers if p not in ALL + OPT_IN]
    if unknown:
        ap.error(f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(ALL + OPT_IN)}")
    if "direct" not in opts.peers:
        opts.peers.insert(0, "direct")   # every figure needs its baseline
    if opts.base:
        from bench.peers import MpmBase
        MpmBase.src = os.path.abspath(opts.base)
        MpmBase.access_log = opts.base_access_log
        if opts.base_python:      # an absolute path: mpm-base starts in the run's work directory
            MpmBase.python = os.path.abspath(shutil.which(opts.base_python) or opts.base_python)
        if "mpm-base" not in opts.peers:
            opts.peers.insert(opts.peers.index("mpm") + 1 if "mpm" in opts.peers else 1, "mpm-base")
    if opts.base_python and not opts.base:
        ap.error("--base-python names the interpreter of mpm-base: it needs --base DIR (--base . for this checkout)")
    opts.scenarios = opts.scenarios.split(",")
    if opts.mpm_extra:
        from bench.peers import Mpm
        Mpm.extra = opts.mpm_extra
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    if opts.setup:
        subprocess.run(["bash", os.path.join(HERE, "setup")], check=False)
    try:
        expand(opts.scenarios)
    except ValueError as exc:
        print(f"python -m bench: {exc}", file=sys.stderr)
        return 2
    outdir = opts.out or os.path.join(HERE, "results",
                                      datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + f"-{opts.mode}")
    if opts.ws_gen == "c" and (gen := wsgen.choose("c")).binary is None:
        print(f"python -m bench: no C WebSocket load generator: {gen.why_python}", file=sys.stderr)
        return 2
    results = runner.run(opts)
    files = report.write(results, outdir)
    print(report.markdown(results))
    print(f"results: {files['markdown']}, {files['json']}" + "".join(f", {p}" for p in files["plots"]),
          file=sys.stderr)
    return status(results)


def status(results: dict) -> int:
    """1 when a cell ran and failed its checks (or nothing at all was measured nor skipped), else 0.

    A scenario skipped for a missing tool and a peer that is not installed are in the report,
    not in the status: on a fresh machine the run is still a success for what it could measure.
    """
    cells = results["cells"]
    if not cells:
        return 0 if results["meta"].get("skipped") else 1
    return 0 if all(c.get("ok") for c in cells) else 1


if __name__ == "__main__":
    sys.exit(main())
