"""The HTTP/2 cells (issue #17): S1 over HTTP/2 with h2load, S3 over HTTP/2 (RFC 8441).

Both go to the peer's TLS port, where every proxy here offers h2 by ALPN (what browsers
use: none of them speaks cleartext HTTP/2).  The backend stays HTTP/1.1, so `direct` has
nothing to offer and is "not supported", as is a peer without the protocol (nginx has no
RFC 8441): the report shows it so instead of a figure.  Proxy CPU per request and per
message is the headline; the report sets it beside the same peer's HTTP/1.1 figure (S1, S3).

    S1h2   h2load -c 8 -m 8 (64 streams in flight, as S1's 64 connections), GET /small, for the
           cell's duration; every request's latency from h2load's --log-file
    S3h2   64 WebSockets as extended CONNECT streams, 8 per connection, one 64 B message in
           flight each (bench/loadgen_h2ws.py, a Python h2 client)
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile

from bench import procs, stats, tools
from bench.accounting import Meter

H2_CONNS, H2_STREAMS = 8, 8


def h2load_argv(url: str, duration: float, log: str) -> list[str]:
    return [tools.which("h2load") or "h2load", "-c", str(H2_CONNS), "-m", str(H2_STREAMS), "-t", "1",
            "-D", str(max(1, round(duration))), f"--log-file={log}", url]


def parse_h2load(out: str) -> dict:
    """requests, rps, failures and the negotiated protocol from h2load's report."""
    result: dict = {"tool": "h2load", "errors": 0}
    m = re.search(r"finished in ([\d.]+)(ms|s), ([\d.]+) req/s", out)
    if m:
        result["seconds"] = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
        result["rps"] = float(m.group(3))
    m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, "
                  r"(\d+) timeout", out)
    if m:
        done, ok, failed, errored, timeout = (int(g) for g in m.groups())
        result["requests"] = ok
        result["errors"] = failed + errored + timeout + (done - ok - failed)
    m = re.search(r"Application protocol: (\S+)", out)
    result["protocol"] = m.group(1) if m else "?"
    return result


def latency_hist(log: str) -> dict:
    """h2load's --log-file: one line per request, "start µs, status, latency µs"."""
    hist: dict[int, int] = {}
    try:
        with open(log) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2].isdigit():
                    b = stats.bucket(int(parts[2]) / 1e6)
                    hist[b] = hist.get(b, 0) + 1
    except OSError:
        pass
    return hist


def h2load_cell(sc, peer, budget, meter: Meter) -> dict:
    url = f"https://127.0.0.1:{peer.site.tls_port}{sc.path}"
    fd, log = tempfile.mkstemp(prefix="h2load-", suffix=".log", dir=peer.site.workdir)
    os.close(fd)
    before = meter.snapshot()
    proc = procs.spawn(h2load_argv(url, budget.duration, log), stdout=subprocess.PIPE)
    try:
        out, _ = proc.communicate(timeout=budget.duration + 60)
    except subprocess.TimeoutExpired:
        out = b""
    procs.stop(proc)
    after = meter.snapshot()
    result = parse_h2load(out.decode(errors="replace"))
    hist = latency_hist(log)
    os.unlink(log)
    cell = {**result, **Meter.window(before, after), "p50_s": stats.percentile(hist, 50),
            "p99_s": stats.percentile(hist, 99)}
    seconds = cell.get("seconds") or cell["wall_s"]
    cell["rps"] = cell.get("requests", 0) / seconds
    cell["payload_bytes"] = cell.get("requests", 0) * sc.size
    cell["notes"] = [] if cell["protocol"] == "h2" else [f"ALPN chose {cell['protocol']}, not h2"]
    cell["ok"] = cell.get("requests", 0) > 0 and not cell["errors"] and cell["protocol"] == "h2"
    return cell


def h2echo_cell(sc, peer, budget, meter: Meter) -> dict:
    from bench.scenarios import Fleet, run_fleet  # (scenarios dispatches here)
    url = f"wss://127.0.0.1:{peer.site.tls_port}/ws"
    nprocs = max(1, budget.procs)
    conns = min(sc.conns, budget.conn_cap or sc.conns)
    shares = [conns // nprocs + (1 if i < conns % nprocs else 0) for i in range(nprocs)]
    fleet = Fleet([[procs.python(), "-m", "bench.loadgen_h2ws", "--url", url, "--conns", str(n),
                    "--streams", str(H2_STREAMS), "--size", str(sc.size), "--duration", str(budget.duration)]
                   for n in shares if n])
    cell, errors, failed = run_fleet(fleet, meter, budget.duration)
    cell["ws_generator"] = "bench/loadgen_h2ws.py (Python h2)"
    cell["msgs_s"] = cell.get("messages", 0) / cell["elapsed"]
    cell["notes"] = errors + cell.get("notes", [])
    cell["ok"] = (cell.get("messages", 0) > 0 and not failed and not cell.get("mismatches")
                  and not cell.get("dropped") and not cell.get("stalled"))
    return cell
