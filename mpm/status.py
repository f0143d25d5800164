"""`mpmctl status`: the scoreboard plus what psutil sees of each process."""

from __future__ import annotations

import os
import time

import psutil

_processes: dict[int, psutil.Process] = {}   # kept so cpu_percent measures since the last status


def _process_figures(pid: int) -> dict:
    try:
        proc = _processes.get(pid)
        if proc is None:
            proc = _processes[pid] = psutil.Process(pid)
        with proc.oneshot():
            times = proc.cpu_times()
            return {"rss": proc.memory_info().rss, "cpu_seconds": round(times.user + times.system, 3),
                    "cpu_percent": proc.cpu_percent(None), "fds": proc.num_fds()}
    except (psutil.Error, OSError):
        _processes.pop(pid, None)
        return {"rss": 0, "cpu_seconds": 0.0, "cpu_percent": 0.0, "fds": 0}


def _handshakes(master) -> dict:
    """TLS handshakes since this master's table began (the metrics table: workers gone
    included), where the scoreboard's columns count the live workers only and so start
    again at every reload."""
    totals = master.metrics.totals([index for index, _ in master.scoreboard.live_rows_indexed()])
    done, failed = totals.worker("tls", 2)
    resumed = totals.worker("tls_reused")[0]
    return {"full": done - resumed, "resumed": resumed, "failed": failed}


def build_status(master) -> dict:
    workers = []
    now = time.time()
    for record in sorted(master.workers.values(), key=lambda r: (r.generation, r.slot)):
        row = master.scoreboard.read(record.row)
        # Seconds since the worker last wrote its row (every 0.5 s from its loop): a stuck one
        # still says "ready" (mpm.readiness.serves).
        row["heartbeat_age"] = round(max(now - row.pop("updated"), 0.0), 1)
        row["pid"] = record.pid
        row["generation"] = record.generation
        row["slot"] = record.slot
        row["started"] = round(row["started"], 3)
        row.update(_process_figures(record.pid))
        workers.append(row)
    for pid in list(_processes):
        if pid not in master.workers and pid != os.getpid():
            del _processes[pid]
    totals = {key: sum(w[key] for w in workers)
              for key in ("connections", "tunnels", "requests", "bytes_in", "bytes_out", "rss", "moved",
                          "tls_full", "tls_resumed", "tls_failures", "h2_connections", "h2_streams")}
    config = master.config
    return {
        "ok": True,
        "master_pid": os.getpid(),
        "master": _process_figures(os.getpid()),
        "generation": master.generation,
        "config": config.file,
        "uptime": round(time.time() - master.started, 3),
        "state": master.stopping or "running",
        "upgrading_to": master.successor.pid if master.successor is not None else None,   # `mpmctl upgrade`
        "listeners": [str(listener) for listener in config.listeners],
        "mpm": {"workers": config.mpm.workers, "server_limit": config.mpm.server_limit,
                "threads_per_child": config.mpm.threads_per_child,
                "max_request_workers": config.mpm.max_request_workers},
        "workers": workers,
        "totals": totals,
        "old_generation_workers": sum(1 for w in workers if w["generation"] != master.generation),
        "tls": {**master.ticket_keys.status(), "handshakes": _handshakes(master)},
        "clients": master.clients.summary(),      # per-client limits: tracked clients, refusals
    }
