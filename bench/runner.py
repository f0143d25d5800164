"""One benchmark run: backends and peers up, every cell measured in interleaved rounds, all stopped.

The order of work, and why:
1. One temp dir holds every config, pid file, log and the self-signed certificate.
2. A scenario that needs a tool this machine lacks (wrk for S7c) is skipped, with the install
   hint, before anything starts; the WebSocket load generator is chosen (bench/wsgen.py).
3. The backend (and, when S7 runs, a TLS copy of it for the direct baseline) starts once;
   every peer proxies to the same one.
4. Every peer that is installed starts and is probed; the others are reported, not faked.
5. For each round, for each scenario, each peer runs one cell, in an order rotated every
   round, so slow drifts of the machine (thermal, neighbours) fall on all peers alike.
6. Whatever happens (an exception, Ctrl-C, SIGTERM), everything started is stopped by pid.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import resource
import shutil
import subprocess
import tempfile
import time
import traceback

from bench import procs, report, tools, wsgen
from bench.accounting import Meter, loadavg
from bench.certs import make_cert
from bench.configs import Site, Sizing
from bench.loadgen_http import wrk_path
from bench.peers import Peer, make
from bench.progress import Progress
from bench.scenarios import BUDGETS, SCENARIOS, expand, max_conns, measure


def start_backend(workdir: str, processes: int, tls: tuple[str, str] | None = None) -> tuple[subprocess.Popen, int]:
    argv = [procs.python(), "-m", "bench.backends", "--host", "127.0.0.1", "--port", "0",
            "--processes", str(processes)]
    if tls:
        argv += ["--tls-cert", tls[0], "--tls-key", tls[1]]
    proc = procs.spawn(argv, stdout=subprocess.PIPE, log=os.path.join(workdir, "backend.log"))
    line = procs.read_line(proc, 15) or ""
    if "listening on" not in line:
        procs.stop(proc)
        raise RuntimeError(f"the backend did not start: {line.strip()!r}")
    return proc, int(line.rsplit(":", 1)[1])


def headline(sid: str, cell: dict) -> str:
    if "error" in cell:
        return f"FAILED: {cell['error']}"
    if "unsupported" in cell:
        return f"not supported: {cell['unsupported']}"
    sc = SCENARIOS[sid]
    key = report.HEADLINE[sid]
    parts = [f"{report.fmt(cell.get(key), 'int')} {dict(rps='req/s', msgs_s='msg/s', mib_s='MiB/s', connect_rate='conn/s')[key]}"]
    if sc.cpu_unit == "msg" and "proxy_cpu_per_unit" in cell:   # per message, the figure that leads
        parts.insert(0, f"proxy CPU {cell['proxy_cpu_per_unit'] * 1e6:.1f} µs/msg")
    if sc.kind == "idle" and "rss_per_conn_kib" in cell:
        parts.append(f"{cell['rss_per_conn_kib']:.1f} KiB/conn, {cell['echo_ok']}/{cell['conns']} echo")
    if sc.kind == "storm":
        parts.append(f"{cell.get('failed', 0)} failed requests through {cell.get('reloads', 0)} reloads")
    if sc.kind == "reload":
        parts.append(f"{cell.get('reloads', 0)} reloads ({cell.get('new_processes', 0)} new processes), "
                     f"{cell.get('dropped', 0)} dropped, "
                     f"{cell.get('lost_bytes', 0)} B lost")
    if cell.get("p99_s"):
        parts.append(f"p99 {report.fmt(cell['p99_s'], 'time')}")
    for key, label in (("resumed_pct", "% of sessions resumed"), ("server_resumed_pct", "% resumed by its count"),
                       ("resumed_after_reload_pct", "% of sessions from before the reload resumed")):
        if cell.get(key) is not None:
            parts.append(f"{cell[key]:.0f}{label}")
    if "proxy_cpu_per_unit" in cell and sc.cpu_unit != "msg":
        label, scale = report.CPU_UNITS[sc.cpu_unit]
        parts.append(f"proxy CPU {cell['proxy_cpu_per_unit'] * scale:.1f} {label}")
    if not cell.get("ok"):
        parts.append("CHECK FAILED" + (f" ({cell['notes'][0]})" if cell.get("notes") else ""))
    if cell.get("disturbed"):
        parts.append(f"disturbed: {cell['outside_load_cores']:.2f} cores busy outside")
    return ", ".join(parts)


def run(opts) -> dict:
    overrides = {k: getattr(opts, k, None) for k in ("duration", "rounds", "idle_conns", "reload_conns", "reloads")}
    budget = dataclasses.replace(BUDGETS[opts.mode], **{k: v for k, v in overrides.items() if v})
    requested = expand(opts.scenarios)
    skipped = {sid: why for sid in requested if (why := SCENARIOS[sid].unmet())}
    ids = [sid for sid in requested if sid not in skipped]
    names = opts.peers
    started = datetime.datetime.now().astimezone()
    procs.install_cleanup()
    workdir = tempfile.mkdtemp(prefix="mpm-bench-")
    os.chmod(workdir, 0o755)          # nginx/Apache workers run as www-data and must reach their temp dirs
    fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    size = Sizing(max_conns=max_conns(ids, budget), fd_limit=min(fd_limit, 1 << 20))
    not_run: dict[str, str] = {}
    versions: dict[str, str] = {}
    running: list[Peer] = []
    cells: list[dict] = []
    load_start = loadavg()
    progress = Progress(total=0)
    for sid, why in skipped.items():
        progress.say(f"{sid} {SCENARIOS[sid].title}: skipped ({why})")
    gen = wsgen.use(getattr(opts, "ws_gen", "auto"))
    if any(SCENARIOS[s].kind != "http" for s in ids):
        progress.say(f"WebSocket load: {gen.describe()}")
    try:
        # Without openssl or cryptography there is no certificate: the TLS scenarios are skipped
        # above and the peers listen on plain HTTP only (tls_port 0).
        cert, key, combined = make_cert(workdir) if tools.cert_maker() else ("", "", "")
        with_ec = bool(cert) and any(SCENARIOS[s].tls and SCENARIOS[s].cert == "ec" for s in ids)
        ec = make_cert(workdir, "ec") if with_ec else ("", "", "")
        backend, backend_port = start_backend(workdir, opts.backend_processes)
        tls_backend = tls_port = tls_backend_ec = None
        if any(SCENARIOS[s].tls for s in ids):
            # Behind a proxy, TLS runs in the proxy's two workers beside the plain backend; the direct
            # baseline does TLS in the backend itself, so it gets two processes to stay the faster path.
            tls_backend, tls_port = start_backend(workdir, max(2, opts.backend_processes), (cert, key))
        if with_ec:
            tls_backend_ec, tls_port_ec = start_backend(workdir, max(2, opts.backend_processes), ec[:2])
        ec_site = dict(cert_ec=ec[0], key_ec=ec[1], combined_pem_ec=ec[2])

        def site_for(name: str) -> Site:
            if name == "direct":
                return Site(workdir, backend_port, tls_port or 0, backend_port, cert, key, combined,
                            tls_port_ec=tls_port_ec if with_ec else 0, **ec_site)
            return Site(workdir, procs.free_port(), procs.free_port() if cert else 0, backend_port,
                        cert, key, combined, tls_port_ec=procs.free_port() if with_ec else 0, **ec_site)

        start_peers(names, site_for, size, progress, running, not_run, versions)

        progress.total = budget.rounds * len(ids) * len(running)
        run_rounds(opts, budget, ids, running, progress, cells, backend, {"rsa": tls_backend, "ec": tls_backend_ec})
    except KeyboardInterrupt:
        progress.say("interrupted: stopping everything and writing what was measured")
    finally:
        for peer in running:
            peer.stop()
        procs.stop_all()
        if opts.keep:
            progress.say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    return _results(opts, budget, requested, skipped, ids, running, not_run, versions, cells, started, gen,
                    load_start, size)


def run_rounds(opts, budget, ids: list[str], running: list[Peer], progress: Progress, cells: list[dict],
               backend, tls_backends: dict) -> None:
    """Every scenario for every peer, round after round; the peers' order rotates each round."""
    for rnd in range(1, budget.rounds + 1):
        for sid in ids:
            sc = SCENARIOS[sid]
            shift = (rnd - 1) % max(1, len(running))
            for peer in running[shift:] + running[:shift]:
                progress.start(f"round {rnd} {sid} {sc.title} — {peer.name}")
                waited, quiet = settle(budget.settle if opts.settle is None else opts.settle,
                                       opts.disturbed_threshold)
                cell = run_cell(sid, peer, budget, backend, tls_backends["ec" if sc.cert == "ec" else "rsa"],
                                opts.disturbed_threshold)
                cell.update(settle_wait_s=waited, outside_load_before=quiet)
                cell.update(scenario=sid, peer=peer.name, round=rnd)
                cells.append(cell)
                progress.done(headline(sid, cell))


def _results(opts, budget, requested, skipped, ids, running, not_run, versions, cells, started, gen,
             load_start, size) -> dict:
    peers_run = [p.name for p in running]
    summaries = report.summarize(cells, ids, peers_run)
    results = {
        "meta": {"started": started.isoformat(timespec="seconds"),
                 "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                 "mode": opts.mode, "rounds": budget.rounds, "duration": budget.duration,
                 "budget": budget.__dict__, "scenarios": requested, "skipped": skipped,
                 "peers_requested": opts.peers, "peers_run": peers_run,
                 "not_run": not_run, "versions": versions, "http_tool": ("wrk " + _wrk_version()) if wrk_path()
                 else f"built-in (wrk not installed: {tools.INSTALL})", "ws_tool": gen.describe(),
                 "disturbed_threshold": opts.disturbed_threshold,
                 "machine": report.machine_info(load_start), "sizing": size.__dict__,
                 "scenario_defs": {sid: SCENARIOS[sid].__dict__ for sid in requested}},
        "cells": cells,
        "summary": [s.__dict__ for s in summaries],
        "checks": report.checks(cells, ids),
    }
    return results


def start_peers(names: list[str], site_for, size: Sizing, progress: Progress, running: list[Peer],
                not_run: dict[str, str], versions: dict[str, str]) -> None:
    """Start and probe each peer; one that serves joins ``running`` at once (so that an exception
    half-way still stops it), one that is missing or fails to start is noted in ``not_run``."""
    for name in names:
        peer = make(name)
        why = peer.missing()
        if why:
            not_run[name] = f"missing: {why}"
            progress.say(f"{name}: not measured ({why})")
            continue
        versions[name] = peer.version
        site = site_for(name)
        why = peer.start(site, size)
        if why:
            not_run[name] = f"failed to start: {why}"
            progress.say(f"{name}: not measured (failed to start: {why})")
            peer.stop()
            continue
        progress.say(f"{name} {peer.version}: up" + (f" on 127.0.0.1:{site.port}" if name != "direct" else "")
                     + (f" (TLS failed its probe: {peer.tls_problem})" if peer.tls_problem else ""))
        running.append(peer)


def settle(limit: float, threshold: float) -> tuple[float, float | None]:
    """Wait (up to ``limit`` seconds) for outside load to drop under ``threshold`` before a cell."""
    if limit <= 0:
        return 0.0, None
    meter = Meter([], None)
    started = time.monotonic()
    while True:
        outside = meter.outside_now()
        if outside <= threshold or time.monotonic() - started >= limit:
            return time.monotonic() - started, outside


def run_cell(sid: str, peer: Peer, budget, backend, tls_backend, threshold: float) -> dict:
    sc = SCENARIOS[sid]
    why = peer.unsupported(sc.protocol) or (peer.plain_only if sc.tls else None)
    if why:
        return {"unsupported": why, "ok": True}
    if peer.name != "direct" and not peer.alive():
        return {"error": f"{peer.name} is not running any more: {peer.log and open(peer.log).read()[-300:]}",
                "ok": False}
    if sc.tls and peer.tls_problem:
        return {"error": f"TLS listener failed its probe: {peer.tls_problem}", "ok": False}
    backend_pid = (tls_backend if sc.tls and peer.name == "direct" else backend).pid
    try:
        cell = measure(sc, peer, budget, backend_pid)
    except Exception as exc:  # one broken cell must not lose the others
        return {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=4), "ok": False}
    cell["disturbed"] = cell.get("outside_load_cores", 0.0) > threshold
    return cell


def _wrk_version() -> str:
    try:
        out = subprocess.run([wrk_path(), "-v"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    text = (out.stdout + out.stderr).split()
    return text[1] if len(text) > 1 else ""
