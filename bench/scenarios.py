"""The scenarios (issue #5, S1-S7) and how one cell — one scenario against one peer — is measured.

Every cell has the same shape: start the load generators and let them connect, take a CPU
snapshot (bench/accounting.py), say "go", collect the results, take another snapshot. So
the CPU figures cover exactly the measured window, not the set-up, and every row reads as
proxy CPU per request, per message or per MiB.
"""

from __future__ import annotations

import math
import subprocess
import time
from dataclasses import dataclass

from bench import procs, stats, tlsresume, tools, wsgen
from bench.accounting import Meter, tree_pids, tree_rss
from bench.loadgen_http import parse_wrk, wrk_argv, wrk_path
from bench.peers import Peer, ws_probe

MiB = 1024 * 1024


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    kind: str                 # http | echo | idle | reload | storm
    metric: str               # the headline figure, compared with direct
    unit: str
    higher_is_better: bool = True
    path: str = "/small"
    size: int = 64            # WebSocket payload bytes (http: expected body bytes)
    conns: int = 64
    tls: bool = False
    close: bool = False       # http: "Connection: close", so every request is a new connection
    cpu_unit: str = ""        # "req" | "msg" | "MiB": what proxy CPU is divided by
    needs: tuple = ()         # outside tools without which the cell cannot run at all (bench/tools.py)
    cert: str = "rsa"         # tls: the certificate every peer shows, RSA-2048 or ECDSA P-256 ("ec")
    tls_version: str = ""     # tls: "" = what the peers negotiate (TLS 1.3), "1.2" = the client caps it
    reload_first: bool = False   # tls handshakes: measured right after the peer reloads
    protocol: str = ""        # "h2" | "rfc8441": what a peer must speak, else its cell is "not supported"

    def unmet(self) -> str | None:
        """Why this scenario cannot run on this machine (it is then reported skipped), or None."""
        return tools.missing_for(self.needs + (("certificate",) if self.tls else ()))


SCENARIOS = {
    "S1": Scenario("S1", "small keep-alive requests (c64)", "http", "rps", "req/s", path="/small", size=100,
                   cpu_unit="req"),
    "S2": Scenario("S2", "64 KiB responses (c64)", "http", "rps", "req/s", path="/64k", size=65536,
                   cpu_unit="MiB"),
    "S3": Scenario("S3", "64 B WebSocket echo, 64 conns", "echo", "msgs_s", "msg/s", size=64, cpu_unit="msg"),
    "S4": Scenario("S4", "1 MiB WebSocket messages", "echo", "mib_s", "MiB/s", size=MiB, conns=16,
                   cpu_unit="MiB"),
    "S5": Scenario("S5", "idle WebSockets", "idle", "rss_per_conn_kib", "KiB/conn", higher_is_better=False,
                   size=32, conns=5000),
    "S6": Scenario("S6", "WebSockets streaming through reloads", "reload", "dropped", "conns dropped",
                   higher_is_better=False, size=4096, conns=200, cpu_unit="MiB"),
    "S7a": Scenario("S7a", "S3 over TLS (wss, 64 B)", "echo", "msgs_s", "msg/s", size=64, tls=True,
                    cpu_unit="msg"),
    "S1s": Scenario("S1s", "S1 over TLS (https keep-alive, c64)", "http", "rps", "req/s", path="/small", size=100,
                    tls=True, cpu_unit="req"),
    # The built-in HTTP generator keeps its connections: a handshake per request needs wrk.
    "S7c": Scenario("S7c", "TLS handshakes (https, a new connection per request, c64; RSA-2048)", "http", "rps",
                    "handshakes/s", path="/small", size=100, tls=True, close=True, cpu_unit="req",
                    needs=("wrk",)),
    "S7c-ec": Scenario("S7c-ec", "S7c with an ECDSA P-256 certificate", "http", "rps", "handshakes/s",
                       path="/small", size=100, tls=True, close=True, cpu_unit="req", cert="ec", needs=("wrk",)),
    "S7c-12": Scenario("S7c-12", "S7c with the client capped at TLS 1.2", "http", "rps", "handshakes/s",
                       path="/small", size=100, tls=True, close=True, cpu_unit="req", tls_version="1.2",
                       needs=("wrk",)),
    "S7c-reload": Scenario("S7c-reload", "S7c right after a reload", "http", "rps", "handshakes/s",
                           path="/small", size=100, tls=True, close=True, cpu_unit="req", reload_first=True,
                           needs=("wrk",)),
    "S7b": Scenario("S7b", "S4 over TLS (wss, 1 MiB)", "echo", "mib_s", "MiB/s", size=MiB, conns=16, tls=True,
                    cpu_unit="MiB"),
    # Keep-alive requests back to back while the peer reloads twice a second (issue #19):
    # the race of a worker closing an idle connection as the client sends on it.  wrk counts
    # every request that failed (a read or write error, a timeout, a non-2xx answer).
    "S8": Scenario("S8", "keep-alive requests through reloads (c32)", "storm", "failed", "failed requests",
                   higher_is_better=False, path="/small", size=100, conns=32, needs=("wrk",)),
    # HTTP/2 to the proxy over TLS (ALPN h2), HTTP/1.1 to the backend (issue #17; bench/h2cells.py).
    "S1h2": Scenario("S1h2", "S1 over HTTP/2 (h2load, 8 conns x 8 streams, TLS)", "h2load", "rps", "req/s",
                     path="/small", size=100, tls=True, cpu_unit="req", needs=("h2load",), protocol="h2"),
    "S3h2": Scenario("S3h2", "S3 over HTTP/2 (RFC 8441, 64 streams on 8 TLS conns)", "h2echo", "msgs_s", "msg/s",
                     size=64, tls=True, cpu_unit="msg", protocol="rfc8441"),
}
ORDER = ["S1", "S2", "S3", "S4", "S1s", "S7a", "S7b", "S7c", "S7c-ec", "S7c-12", "S7c-reload", "S1h2", "S3h2",
         "S5", "S6", "S8"]   # memory and reloads last in a round
S7 = ("S7a", "S7b", "S7c", "S7c-ec", "S7c-12", "S7c-reload")


@dataclass(frozen=True)
class Budget:
    """How long and how big, per mode."""
    duration: float       # seconds of load per cell
    rounds: int
    idle_conns: int       # S5
    reload_conns: int     # S6
    reloads: int
    reload_duration: float
    procs: int            # load generator processes (S5 uses more)
    conn_cap: int = 0     # at most this many WebSockets in echo scenarios (0: as the scenario says)
    settle: float = 0.0   # wait up to this long before a cell for outside load to pass (--settle)


BUDGETS = {
    "tiny": Budget(duration=1.0, rounds=1, idle_conns=20, reload_conns=4, reloads=1, reload_duration=2.0, procs=1,
                   conn_cap=8),
    "quick": Budget(duration=2.0, rounds=1, idle_conns=1000, reload_conns=50, reloads=2, reload_duration=3.0,
                    procs=2),
    "full": Budget(duration=10.0, rounds=3, idle_conns=5000, reload_conns=200, reloads=5, reload_duration=15.0,
                   procs=2, settle=10.0),
}


def expand(names: list[str]) -> list[str]:
    """'S7' means S7a, S7b and the S7c rows; keep the run order of ORDER."""
    wanted = set()
    upper = {sid.upper(): sid for sid in SCENARIOS}
    for name in names:
        name = name.strip()
        if name.upper() == "S7":
            wanted |= set(S7)
        elif name.upper() in upper:
            wanted.add(upper[name.upper()])
        elif name:
            raise ValueError(f"unknown scenario {name!r} (choose from S1-S8, S1s, {', '.join(S7)}, S1h2, S3h2)")
    return [s for s in ORDER if s in wanted]


def max_conns(ids: list[str], budget: Budget) -> int:
    most = 64
    for sid in ids:
        sc = SCENARIOS[sid]
        most = max(most, budget.idle_conns if sc.kind == "idle" else
                   budget.reload_conns if sc.kind == "reload" else sc.conns)
    return most


# -- load generator fleets -----------------------------------------------------------------------------

class Fleet:
    """Several load generator processes, driven together over their stdin/stdout."""

    def __init__(self, argvs: list[list[str]]) -> None:
        self.procs = [procs.spawn(a, stdin=subprocess.PIPE, stdout=subprocess.PIPE) for a in argvs]

    def wait(self, timeout: float) -> list[dict]:
        deadline = time.monotonic() + timeout
        out = []
        for p in self.procs:
            msg = procs.read_json(p, max(0.1, deadline - time.monotonic()))
            out.append(msg or {"event": "timeout", "notes": ["no answer from a load generator"]})
        return out

    def say(self, command: str) -> None:
        for p in self.procs:
            procs.send_line(p, command)

    def close(self) -> None:
        self.say("exit")
        deadline = time.monotonic() + 5
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            procs.stop(p, timeout=2)


def ws_url(peer: Peer, tls: bool) -> str:
    return f"wss://127.0.0.1:{peer.site.tls_port}/ws" if tls else f"ws://127.0.0.1:{peer.site.port}/ws"


def ws_fleet(url: str, conns: int, size: int, duration: float, nprocs: int) -> Fleet:
    """WebSocket load from the generator this run uses (bench/wsgen.py: C, or Python without gcc)."""
    nprocs = max(1, min(nprocs, conns))
    shares = [conns // nprocs + (1 if i < conns % nprocs else 0) for i in range(nprocs)]
    gen = wsgen.current()
    return Fleet([gen.argv(url, n, size, duration) for n in shares])


def merge_ready(ready: list[dict]) -> tuple[int, int, list[str]]:
    errors = [e for r in ready for e in r.get("notes", [])]
    return sum(r.get("connected", 0) for r in ready), sum(r.get("failed", 0) for r in ready), errors[:5]


def run_fleet(fleet: Fleet, meter: Meter, duration: float) -> tuple[dict, list[str], int]:
    """Connect every generator, measure from "go" to the end of their reports, close them:
    (cell with the merged results and the CPU window, connect notes, failed connections)."""
    try:
        connected, failed, errors = merge_ready(fleet.wait(60))
        before = meter.snapshot()
        fleet.say("go")
        result = merge_results(fleet.wait(duration + 60))
        after = meter.snapshot()
    finally:
        fleet.close()
    return {**result, **Meter.window(before, after), "conns": connected, "connect_failed": failed}, errors, failed


def connect_seconds(ready: list[dict]) -> float:
    """How long the slowest load generator took to open its share (they connect in parallel)."""
    return max([r.get("connect_s", 0.0) for r in ready] or [0.0]) or 1e-9


def merge_results(results: list[dict]) -> dict:
    hist = stats.merge([r.get("hist", {}) for r in results])
    elapsed = max([r.get("elapsed", 0.0) for r in results] or [0.0]) or 1e-9
    total = {k: sum(r.get(k, 0) for r in results)
             for k in ("messages", "payload_bytes", "dropped", "lost_bytes", "mismatches", "bytes_echoed",
                       "still_busy", "requests", "bytes", "errors") if any(k in r for r in results)}
    if "still_busy" in total:   # connections whose echo never came back, even 10 s after the end
        total["stalled"] = total.pop("still_busy")
    total["elapsed"] = elapsed
    total["p50_s"] = stats.percentile(hist, 50)
    total["p99_s"] = stats.percentile(hist, 99)
    total["notes"] = [e for r in results for e in r.get("notes", [])][:5]
    return total


# -- the cells ---------------------------------------------------------------------------------------

def measure(sc: Scenario, peer: Peer, budget: Budget, backend_pid: int) -> dict:
    from bench.h2cells import h2echo_cell, h2load_cell
    meter = Meter(peer.pids(), backend_pid)
    kind = {"http": http_cell, "echo": echo_cell, "idle": idle_cell, "reload": reload_cell,
            "storm": storm_cell, "h2load": h2load_cell, "h2echo": h2echo_cell}[sc.kind]
    cell = kind(sc, peer, budget, meter)
    if sc.kind not in ("http", "h2load", "h2echo"):
        cell["ws_generator"] = wsgen.current().name(ws_url(peer, sc.tls))
    cpu = cell.get("proxy_cpu_s")
    if cpu is not None and peer.name != "direct":
        units = {"req": cell.get("requests"), "msg": cell.get("messages"),
                 "MiB": (cell.get("payload_bytes") or cell.get("bytes") or 0) / MiB}.get(sc.cpu_unit)
        if units:
            cell["proxy_cpu_per_unit"] = cpu / units
            if cell.get("proxy_user_s") is not None:       # user and kernel apart (issue #12)
                cell["proxy_user_per_unit"] = cell["proxy_user_s"] / units
                cell["proxy_sys_per_unit"] = (cpu - cell["proxy_user_s"]) / units
    return cell


def http_cell(sc: Scenario, peer: Peer, budget: Budget, meter: Meter) -> dict:
    url = (f"https://127.0.0.1:{tlsresume.tls_port(peer, sc)}{sc.path}" if sc.tls
           else f"http://127.0.0.1:{peer.site.port}{sc.path}")
    handshakes = sc.tls and sc.close
    extra = tlsresume.before(sc, peer) if handshakes else {}
    counts = None
    if wrk_path():
        argv = wrk_argv(url, sc.conns, budget.duration)
        if sc.close:
            argv[1:1] = ["-H", "Connection: close"]
        before = meter.snapshot()
        counts = peer.tls_counts() if handshakes else None
        proc = procs.spawn(argv, stdout=subprocess.PIPE, env=tlsresume.wrk_env(sc.tls_version))
        try:
            out, _ = proc.communicate(timeout=budget.duration + 30)
        except subprocess.TimeoutExpired:
            out = b""
        procs.stop(proc)
        after = meter.snapshot()
        if counts is not None:
            extra.update(tlsresume.server_resumed(counts, peer.tls_counts()))
        result = parse_wrk(out.decode(errors="replace"))
        result["payload_bytes"] = result.get("requests", 0) * sc.size
    else:
        nprocs = max(1, budget.procs)
        shares = [sc.conns // nprocs + (1 if i < sc.conns % nprocs else 0) for i in range(nprocs)]
        fleet = Fleet([[procs.python(), "-m", "bench.loadgen_http", "--url", url, "--conns", str(n),
                        "--duration", str(budget.duration), "--expect", str(sc.size)] for n in shares])
        try:
            fleet.wait(30)
            before = meter.snapshot()
            fleet.say("go")
            result = merge_results(fleet.wait(budget.duration + 30))
            after = meter.snapshot()
        finally:
            fleet.close()
        result["tool"] = "builtin"
        result["seconds"] = result.pop("elapsed")
        result["payload_bytes"] = result.get("requests", 0) * sc.size
    if handshakes:
        extra.update(tlsresume.after(sc, peer))
    cell = {**result, **Meter.window(before, after), **extra}
    seconds = cell.get("seconds") or cell["wall_s"]
    cell["rps"] = cell.get("requests", 0) / seconds
    cell["mib_s"] = cell["payload_bytes"] / MiB / seconds
    cell["ok"] = cell.get("requests", 0) > 0 and not cell.get("errors")
    return cell


def echo_cell(sc: Scenario, peer: Peer, budget: Budget, meter: Meter) -> dict:
    conns = min(sc.conns, budget.conn_cap or sc.conns)
    fleet = ws_fleet(ws_url(peer, sc.tls), conns, sc.size, budget.duration, budget.procs)
    cell, errors, failed = run_fleet(fleet, meter, budget.duration)
    cell["msgs_s"] = cell.get("messages", 0) / cell["elapsed"]
    cell["mib_s"] = cell.get("payload_bytes", 0) / MiB / cell["elapsed"]
    cell["notes"] = errors + cell.get("notes", [])
    cell["ok"] = (cell.get("messages", 0) > 0 and not failed and not cell.get("mismatches")
                  and not cell.get("dropped") and not cell.get("stalled"))
    return cell


def idle_cell(sc: Scenario, peer: Peer, budget: Budget, meter: Meter) -> dict:
    total = budget.idle_conns
    nprocs = max(budget.procs, math.ceil(total / 1000))
    rss_before = sum(tree_rss(p) for p in meter.peer_pids)
    backend_before = tree_rss(meter.backend_pid)
    before = meter.snapshot()
    fleet = ws_fleet(ws_url(peer, False), total, sc.size, 0, nprocs)
    try:
        ready = fleet.wait(120)
        connected, failed, errors = merge_ready(ready)
        after_connect = meter.snapshot()
        time.sleep(0.5)   # let lazily allocated buffers settle before reading memory
        rss_after = sum(tree_rss(p) for p in peer.pids())
        backend_after = tree_rss(meter.backend_pid)
        fleet.say("check")
        result = merge_results(fleet.wait(60))
    finally:
        fleet.close()
    window = Meter.window(before, after_connect)
    took = connect_seconds(ready)
    cell = {"conns": connected, "connect_failed": failed, "connect_s": took,
            "connect_rate": connected / took, "echo_ok": result.get("messages", 0),
            "echo_failed": connected - result.get("messages", 0), "mismatches": result.get("mismatches", 0),
            "rss_before": rss_before, "rss_after": rss_after,
            "backend_rss_per_conn_kib": (backend_after - backend_before) / 1024 / max(connected, 1),
            **window, "notes": errors + result.get("notes", [])}
    if peer.name != "direct":
        cell["rss_per_conn_kib"] = (rss_after - rss_before) / 1024 / max(connected, 1)
    cell["ok"] = connected == total and cell["echo_failed"] == 0 and not cell["mismatches"]
    return cell


def reload_cell(sc: Scenario, peer: Peer, budget: Budget, meter: Meter) -> dict:
    conns, reloads, duration = budget.reload_conns, budget.reloads, budget.reload_duration
    fleet = ws_fleet(ws_url(peer, False), conns, sc.size, duration, budget.procs)
    done = 0
    pids_before = {p for root in peer.pids() for p in tree_pids(root)}
    pids_seen: set[int] = set()
    try:
        connected, failed, errors = merge_ready(fleet.wait(60))
        before = meter.snapshot()
        start = time.monotonic()
        fleet.say("go")
        # Reload at even intervals; between reloads, watch the peer's process tree so the report
        # can say whether a reload visibly happened (new worker processes).
        times = [start + duration * i / (reloads + 1) for i in range(1, reloads + 1)]
        if peer.reload_signal is None:
            times = []
        while time.monotonic() < start + duration:
            if times and time.monotonic() >= times[0]:
                times.pop(0)
                peer.reload()
                done += 1
            pids_seen |= {p for root in peer.pids() for p in tree_pids(root)}
            time.sleep(0.05)
        result = merge_results(fleet.wait(duration + 60))
        after = meter.snapshot()
    finally:
        fleet.close()
    time.sleep(0.2)
    new_conn = ws_probe(ws_url(peer, False))
    cell = {**result, **Meter.window(before, after), "conns": connected, "connect_failed": failed,
            "reloads": done, "new_processes": len(pids_seen - pids_before),
            "new_conn_after_reloads": new_conn is None, "peer_alive": peer.alive() or
            peer.name == "direct", "notes": errors + result.get("notes", []) + ([new_conn] if new_conn else [])}
    cell["msgs_s"] = cell.get("messages", 0) / cell["elapsed"]
    cell["mib_s"] = cell.get("payload_bytes", 0) / MiB / cell["elapsed"]
    if done and not cell["new_processes"]:
        cell["notes"].append(f"{done} reload signals, but no new process appeared: did it reload?")
    cell["ok"] = (not cell.get("dropped") and not cell.get("mismatches") and not cell.get("stalled")
                  and cell["new_conn_after_reloads"]
                  and not failed and (cell["new_processes"] > 0 or not done))
    return cell


def storm_cell(sc: Scenario, peer: Peer, budget: Budget, meter: Meter) -> dict:
    """wrk keep-alive load for reload_duration seconds with two reloads a second (a peer
    without reloads, direct, is the baseline: no failure is expected there)."""
    duration = budget.reload_duration
    reloads = int(duration * 2) if peer.reload_signal is not None else 0
    argv = wrk_argv(f"http://127.0.0.1:{peer.site.port}{sc.path}", sc.conns, duration)
    before = meter.snapshot()
    proc = procs.spawn(argv, stdout=subprocess.PIPE)
    start, done = time.monotonic(), 0
    while done < reloads and proc.poll() is None:
        time.sleep(max(0.0, start + (done + 1) * duration / (reloads + 1) - time.monotonic()))
        peer.reload()
        done += 1
    try:
        out, _ = proc.communicate(timeout=duration + 30)
    except subprocess.TimeoutExpired:
        out = b""
    procs.stop(proc)
    after = meter.snapshot()
    result = parse_wrk(out.decode(errors="replace"))
    cell = {**result, **Meter.window(before, after), "reloads": done}
    cell["failed"] = cell.get("errors", 0)
    seconds = cell.get("seconds") or cell["wall_s"]
    cell["rps"] = cell.get("requests", 0) / seconds
    cell["ok"] = cell.get("requests", 0) > 0 and peer.alive() or peer.name == "direct"
    return cell
