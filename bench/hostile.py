"""Hostile clients against a real mpm-proxy (issue #15): the figures, run once and reported.

    python -m bench.hostile [--scenarios attack,slowloris,pipeline,churn] [--out FILE]

Each scenario starts the bundled backend and a master with two workers at the default
capacity (1,024 connections each) from a generated config, drives it from client processes
bound to distinct loopback addresses, and records what an operator would ask:

    attack     an attacker on 127.0.0.2 holding 5,000 connections and sending 2,000 requests/s
               while 50 legitimate clients (127.0.0.3 ...) send theirs; with per-client limits.
               Their success and p99 against a run without the attacker.
    slowloris  3,000 connections from one address that never finish a head (a header line every
               10 s, reconnecting when closed), with and without per-client limits: the
               legitimate clients (a new connection per request) against their baseline.
    pipeline   20,000 requests pipelined on one connection, answered in order.
    churn      50,000 connect/close cycles (one in ten with a request).

Legitimate load alone and with the hostile load alternate, two rounds each (the machine's
drift falls on both alike); the hostile generators run under SCHED_IDLE, since they stand for
other machines.  For every scenario: no worker died (same pids), and the proxy's file descriptors
and RSS after the load has gone, against before (the backend connections the workers keep
pooled are counted apart).  The load generators are `--role` modes of this module,
in their own processes (`python -m bench.hostile --role legit ...`); they print one JSON line.
Like the rest of bench/, this imports nothing of the product: it runs `python -m mpm`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import threading
import time

import psutil

from bench import procs
from bench.hostile_load import ROLES

HERE = os.path.dirname(os.path.abspath(__file__))
LIMITS = {"per_client": {"connections": 200, "tunnels": 100, "requests": {"rate": 100, "burst": 200}}}
LEGIT = ["--sources", "127.0.0.3-52"]


class Site:
    """The backend and a master, with what the scenario measures of the master's processes."""

    def __init__(self, workdir: str, limits: dict | None):
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.backend_port = backend_port = procs.free_port()
        self.port = procs.free_port()
        self.backend = procs.spawn([sys.executable, "-m", "bench.backends", "--port", str(backend_port)],
                                   log=os.path.join(workdir, "backend.log"))
        assert procs.wait_port(backend_port, self.backend), "the backend did not start"
        config = {"listen": [f"127.0.0.1:{self.port}"], "mpm": {"workers": 2},
                  "timeouts": {"keepalive": 15, "client_header": 20},
                  "control": {"pidfile": os.path.join(workdir, "mpm.pid"), "socket": os.path.join(workdir, "mpm.sock")},
                  "log": {"access": "off", "error": os.path.join(workdir, "error.log"), "level": "warning"},
                  "routes": [{"path": "/", "to": f"http://127.0.0.1:{backend_port}/"}]}
        if limits:
            config["limits"] = limits
        self.config = os.path.join(workdir, "mpm.yaml")
        with open(self.config, "w") as f:
            json.dump(config, f)            # JSON is YAML
        self.master = procs.spawn([sys.executable, "-m", "mpm", "start", "-c", self.config],
                                  log=os.path.join(workdir, "mpm.log"), cwd=procs.ROOT)
        assert procs.wait_port(self.port, self.master), "mpm did not start"
        deadline = time.monotonic() + 10
        while len(self.workers()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        self.pids = sorted(p.pid for p in self.workers())
        self.peak = {"fds": 0, "rss_mib": 0.0}
        self.sampling = True
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        """The highest fds and RSS seen while the scenario runs (every 0.5 s)."""
        while self.sampling:
            try:
                figures = self.figures(pool=False)
            except psutil.Error:
                figures = {"fds": 0, "rss_mib": 0.0}
            self.peak = {key: max(self.peak[key], figures[key]) for key in self.peak}
            time.sleep(0.5)

    def workers(self) -> list[psutil.Process]:
        try:
            return [p for p in psutil.Process(self.master.pid).children() if p.status() != psutil.STATUS_ZOMBIE]
        except psutil.NoSuchProcess:
            return []

    def figures(self, pool: bool = True) -> dict:
        """fds and RSS of the master and each worker, and the backend connections they keep
        pooled (`pool`: reading them means parsing /proc/net/tcp, costly with thousands of
        sockets in TIME_WAIT, so the sampler below does without)."""
        processes = [psutil.Process(self.master.pid), *self.workers()]
        pooled = sum(1 for p in processes[1:] for c in p.net_connections("tcp")
                     if c.raddr and c.raddr.port == self.backend_port) if pool else None
        return {"pids": sorted(p.pid for p in processes[1:]), "fds": sum(p.num_fds() for p in processes),
                "backend_pool": pooled,
                "rss_mib": round(sum(p.memory_info().rss for p in processes) / 2**20, 1),
                "cpu_s": round(sum(sum(p.cpu_times()[:2]) for p in processes), 2)}

    def settle(self, timeout: float = 40.0) -> dict:
        """The figures once the proxy holds no connection (idle ones time out), or at `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            status = _status(self)
            open_ = sum(w["connections"] for w in status.get("workers", [])) if status else -1
            if open_ == 0 or time.monotonic() > deadline:
                time.sleep(0.5)
                self.sampling = False
                return {**self.figures(), "connections_left": open_, "peak": self.peak}
            time.sleep(0.5)

    def errors(self, needle: str) -> int:
        try:
            with open(os.path.join(self.workdir, "error.log")) as f:
                return sum(needle in line for line in f)
        except FileNotFoundError:
            return 0

    def close(self) -> None:
        self.sampling = False
        procs.stop(self.master)
        procs.stop(self.backend)


def _status(site: Site) -> dict | None:
    out = subprocess.run([sys.executable, "-m", "mpm", "status", "--json", "-c", site.config], capture_output=True,
                         text=True, cwd=procs.ROOT, timeout=20)
    return json.loads(out.stdout) if out.returncode == 0 else None


def load(role: str, port: int, *args: str, log: str, hostile: bool = False):
    """Start a load generator process; `.result()` waits for its JSON line.  A `hostile` one
    runs under SCHED_IDLE (`chrt --idle 0`): it stands for other machines, so on this one it
    gets the cores only when the proxy and the legitimate clients it is measured against do
    not want them (a niced process still delays their wakeups by a scheduler slice)."""
    argv = [sys.executable, "-m", "bench.hostile", "--role", role, "--port", str(port), *args]
    proc = procs.spawn(["chrt", "--idle", "0", *argv] if hostile else argv, stdout=subprocess.PIPE, log=log)

    class Running:
        def result(self, timeout: float = 600) -> dict:
            line = procs.read_line(proc, timeout)
            procs.stop(proc)
            return json.loads(line) if line and line.startswith("{") else {"error": f"no result: {line!r}"}
    return Running()


# == scenarios =================================================================================
ROUNDS = 2          # baseline and attacked phases alternate, so the machine's drift falls on both
RECONNECT = os.environ.get("MPM_HOSTILE_RECONNECT", "10")     # attack: a legitimate client reconnects every N requests


def _phases(site: Site, seconds: float, legit_args: list[str], hostile_role: str, hostile_args: list[str]) -> dict:
    """ROUNDS x (legitimate load alone, then the same with the hostile load running)."""
    rounds = []
    for n in range(ROUNDS):
        baseline = load("legit", site.port, *LEGIT, *legit_args, "--seconds", str(seconds),
                        log=os.path.join(site.workdir, f"legit-base{n}.log")).result()
        hostile = load(hostile_role, site.port, *hostile_args, "--seconds", str(seconds + 10),
                       log=os.path.join(site.workdir, f"{hostile_role}{n}.log"), hostile=True)
        time.sleep(8)           # its connections are up
        during = site.figures(pool=False)
        attacked = load("legit", site.port, *LEGIT, *legit_args, "--seconds", str(seconds),
                        log=os.path.join(site.workdir, f"legit-attacked{n}.log")).result()
        rounds.append({"baseline": baseline, "attacked": attacked, hostile_role: hostile.result(), "during": during})
    return {"rounds": rounds, "baseline": _combined([r["baseline"] for r in rounds]),
            "attacked": _combined([r["attacked"] for r in rounds])}


def _combined(results: list[dict]) -> dict:
    """Requests and successes summed; latency quantiles as the median of the rounds'."""
    requests, ok = sum(r.get("requests", 0) for r in results), sum(r.get("ok", 0) for r in results)
    return {"requests": requests, "ok": ok, "ok_pct": round(100 * ok / requests, 2) if requests else 0,
            **{key: statistics.median(r.get(key, 0) for r in results) for key in ("p50_ms", "p99_ms", "max_ms")}}


def attack(workdir: str, seconds: float) -> dict:
    site = Site(os.path.join(workdir, "attack"), LIMITS)
    try:
        before = site.figures()
        phases = _phases(site, seconds, ["--rate", "10", "--reconnect-every", RECONNECT], "attacker",
                         ["--sources", "127.0.0.2", "--connections", "5000", "--rate", "2000"])
        return {**phases, "before": before, "after": site.settle(),
                "status_clients": (_status(site) or {}).get("clients"), "refusal_lines": site.errors("per-client limit")}
    finally:
        site.close()


def slowloris(workdir: str, seconds: float, limits: bool) -> dict:
    site = Site(os.path.join(workdir, f"slowloris-{'limits' if limits else 'nolimits'}"), LIMITS if limits else None)
    try:
        before = site.figures()
        phases = _phases(site, seconds, ["--rate", "2", "--reconnect-every", "1"], "slowloris",
                         ["--sources", "127.0.0.2", "--connections", "3000"])
        return {**phases, "before": before, "after": site.settle(), "room_lines": site.errors("at capacity")}
    finally:
        site.close()


def pipeline(workdir: str) -> dict:
    site = Site(os.path.join(workdir, "pipeline"), None)
    try:
        before = site.figures()
        burst = load("pipeline", site.port, "--requests", "20000", log=os.path.join(site.workdir, "pipeline.log"))
        return {"burst": burst.result(), "before": before, "after": site.settle()}
    finally:
        site.close()


def churn(workdir: str) -> dict:
    """Twice 50,000 cycles: what the first leaves behind (caches filling up) must not grow in the second."""
    site = Site(os.path.join(workdir, "churn"), LIMITS)
    try:
        before = site.figures()
        first = load("churn", site.port, "--cycles", "50000", log=os.path.join(site.workdir, "churn.log")).result()
        middle = site.settle()
        site.sampling = True
        threading.Thread(target=site._sample, daemon=True).start()
        # Other source addresses: the first round's client ports are still in TIME_WAIT.
        second = load("churn", site.port, "--cycles", "50000", "--first-source", "70",
                      log=os.path.join(site.workdir, "churn.log")).result()
        return {"cycles": first, "second_cycles": second, "before": before, "after_first": middle,
                "after": site.settle()}
    finally:
        site.close()


def summary(results: dict) -> str:
    lines = ["| scenario | legit ok (baseline / attacked) | legit p99 ms (baseline / attacked) | workers | "
             "fds before/peak/after | RSS MiB before/peak/after |", "|---|---|---|---|---|---|"]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | {r['error']} | | | | |")
            continue
        base, hit = r.get("baseline", {}), r.get("attacked", {})
        ok = f"{base.get('ok_pct', '-')}% / {hit.get('ok_pct', '-')}%" if base else "-"
        p99 = f"{base.get('p99_ms', '-')} / {hit.get('p99_ms', '-')}" if base else "-"
        same = "same pids" if r["before"]["pids"] == r["after"]["pids"] else f"CHANGED {r['before']['pids']} -> {r['after']['pids']}"
        before, after = r["before"], r["after"]
        lines.append(f"| {name} | {ok} | {p99} | {same} | {before['fds']} / {after['peak']['fds']} / {after['fds']} | "
                     f"{before['rss_mib']} / {after['peak']['rss_mib']} / {after['rss_mib']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.hostile", description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenarios", default="attack,slowloris,pipeline,churn")
    ap.add_argument("--seconds", type=float, default=15.0, help="legitimate load per phase (two rounds of each)")
    ap.add_argument("--out", help="JSON results (default bench/results/hostile-DATE.json)")
    ap.add_argument("--role", choices=sorted(ROLES), help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else argv
    if "--role" in argv:            # a load generator: the rest of the arguments are its own
        at = argv.index("--role")
        return ROLES[argv[at + 1]](argv[:at] + argv[at + 2:])
    opts = ap.parse_args(argv)
    procs.install_cleanup()
    workdir = os.path.join("/tmp", f"mpm-hostile-{os.getpid()}")
    results = {}
    for name in opts.scenarios.split(","):
        print(f"[{time.strftime('%H:%M:%S')}] {name} ...", file=sys.stderr, flush=True)
        try:
            if name == "attack":
                results[name] = attack(workdir, opts.seconds)
            elif name == "slowloris":
                results["slowloris (no per-client limits)"] = slowloris(workdir, opts.seconds, False)
                results["slowloris (per-client limits)"] = slowloris(workdir, opts.seconds, True)
            elif name == "pipeline":
                results[name] = pipeline(workdir)
            elif name == "churn":
                results[name] = churn(workdir)
        except AssertionError as exc:
            results[name] = {"error": str(exc)}
    out = opts.out or os.path.join(HERE, "results", f"hostile-{datetime.datetime.now():%Y%m%d-%H%M%S}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(results, f, indent=2)
    print(summary(results))
    print(f"results: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
