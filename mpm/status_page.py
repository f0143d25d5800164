"""/server-status: what Apache's mod_status is, for this proxy.

The page a person reads (it reloads itself every `?refresh=N` seconds, 5 by default):
the master and its generations, every worker (state, connections, tunnels, requests,
bytes, RSS, CPU), the traffic totals, and the balancers with their members.  `?auto`
gives the machine-readable form Apache's does: `Key: value` lines with Apache's own
names where they mean the same thing (Total Accesses, BusyWorkers, Scoreboard, ...), then
one line per worker and per balancer member.

Scoreboard characters, as close to Apache's as the states allow: S starting, _ ready and
idle, W ready with connections, F full (at capacity, not accepting), G stopping
(gracefully finishing), C exiting, ! not responding (ready or full, but no heartbeat for
STALE_HEARTBEAT seconds: stuck; out of Busy/IdleWorkers, counted in Unresponsive).
"""

from __future__ import annotations

import html
import time

from mpm.readiness import SERVING_STATES, STALE_HEARTBEAT
from mpm.status import build_status
from shm import metrics as m

SCOREBOARD_KEY = {"starting": "S", "ready": "_", "full": "F", "stopping": "G", "exiting": "C"}
VERSION = "mpm-proxy/0.1.0"


def render(master, query: dict) -> tuple[str, bytes]:
    """(content type, body) of /server-status for the parsed query string."""
    figures = _figures(master)
    if "auto" in query:
        return "text/plain; charset=utf-8", _auto(figures).encode()
    try:
        refresh = min(max(int(query.get("refresh", ["5"])[0]), 1), 3600)
    except ValueError:
        refresh = 5
    return "text/html; charset=utf-8", _page(figures, refresh).encode()


def _figures(master) -> dict:
    status = build_status(master)
    rows = master.scoreboard.live_rows_indexed()
    totals = master.metrics.totals([index for index, _ in rows])
    requests = sent = received = 0
    duration = 0.0
    for rid, _ in master.metrics.route_names():
        requests += sum(totals.requests_by_class(rid))
        sent += totals.route(rid, "sent")[0]
        received += totals.route(rid, "received")[0]
        duration += totals.duration_sum(rid)
    code, health = master.readiness.health(master)
    return {"status": status, "requests": requests, "sent": sent, "received": received, "duration": duration,
            "tunnels_opened": totals.worker("tunnels_opened")[0],
            "refused": sum(totals.worker("refused", len(m.REFUSALS))),
            "health": health, "healthy": code == 200,
            "members": list(master.balancers.member_metrics())}


def _stuck(worker: dict) -> bool:
    return worker["state"] in SERVING_STATES and worker["heartbeat_age"] >= STALE_HEARTBEAT


def _char(worker: dict) -> str:
    if _stuck(worker):
        return "!"
    if worker["state"] == "ready" and worker["connections"]:
        return "W"
    return SCOREBOARD_KEY.get(worker["state"], "?")


def _auto(f: dict) -> str:
    s = f["status"]
    workers, uptime = s["workers"], max(s["uptime"], 0.001)
    serving = [w for w in workers if w["state"] in SERVING_STATES and not _stuck(w)]
    lines = [
        f"ServerVersion: {VERSION}", "ServerMPM: event",
        f"CurrentTime: {time.strftime('%A, %d-%b-%Y %H:%M:%S %Z')}",
        f"RestartTime: {time.strftime('%A, %d-%b-%Y %H:%M:%S %Z', time.localtime(time.time() - s['uptime']))}",
        f"ParentServerConfigGeneration: {s['generation']}",
        f"ServerUptimeSeconds: {int(s['uptime'])}",
        f"Total Accesses: {f['requests']}", f"Total kBytes: {f['sent'] // 1024}",
        f"Total Duration: {int(f['duration'] * 1000)}",
        f"ReqPerSec: {f['requests'] / uptime:.6g}", f"BytesPerSec: {f['sent'] / uptime:.6g}",
        f"BytesPerReq: {f['sent'] / f['requests'] if f['requests'] else 0:.6g}",
        f"DurationPerReq: {f['duration'] * 1000 / f['requests'] if f['requests'] else 0:.6g}",
        f"BusyWorkers: {sum(1 for w in serving if w['connections'])}",
        f"IdleWorkers: {sum(1 for w in serving if not w['connections'])}",
        f"Processes: {len(workers)}", f"Stopping: {sum(1 for w in workers if w['state'] == 'stopping')}",
        f"Unresponsive: {sum(1 for w in workers if _stuck(w))}",
        f"ConnsTotal: {s['totals']['connections']}", f"Tunnels: {s['totals']['tunnels']}",
        f"TunnelsOpened: {f['tunnels_opened']}", f"Refused: {f['refused']}",
        f"Health: {f['health']}", f"Scoreboard: {''.join(_char(w) for w in workers)}",
    ]
    for w in workers:
        lines.append(f"Worker: pid={w['pid']} generation={w['generation']} slot={w['slot']} state={w['state']} "
                     f"connections={w['connections']} tunnels={w['tunnels']} requests={w['requests']} "
                     f"bytes_in={w['bytes_in']} bytes_out={w['bytes_out']} rss={w['rss']} "
                     f"cpu_seconds={w['cpu_seconds']} heartbeat_age={w['heartbeat_age']}")
    for (balancer, url), member in f["members"]:
        lines.append(f"Member: balancer={balancer} url={url} status={member['status']} state={member['state']} "
                     f"weight={member['weight']} busy={member['busy']} requests={member['requests']} "
                     f"bytes={member['bytes']} failures={member['failures']}")
    return "\n".join(lines) + "\n"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _page(f: dict, refresh: int) -> str:
    s = f["status"]
    workers = s["workers"]
    generations: dict[int, list] = {}
    for w in workers:
        generations.setdefault(w["generation"], []).append(w)
    gen_rows = [[g, "current" if g == s["generation"] else "finishing", len(ws),
                 "".join(_char(w) for w in ws), sum(w["connections"] for w in ws), sum(w["tunnels"] for w in ws)]
                for g, ws in sorted(generations.items())]
    worker_rows = [[w["pid"], w["generation"], w["slot"],
                    f"{w['state']}: not responding for {w['heartbeat_age']:.0f} s" if _stuck(w) else w["state"],
                    w["connections"], w["tunnels"], w["requests"],
                    _size(w["bytes_in"]), _size(w["bytes_out"]), _size(w["rss"]), f"{w['cpu_seconds']:.1f}"]
                   for w in workers]
    member_rows = [[b, url, mb["route"] or "-", mb["status"], mb["state"], mb["weight"], mb["busy"], mb["requests"],
                    _size(mb["bytes"]), mb["failures"]] for (b, url), mb in f["members"]]
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="{refresh}">
<title>mpm-proxy status</title>
<style>body{{font:14px sans-serif;margin:1.5em}} table{{border-collapse:collapse;margin:.5em 0 1.5em}}
td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:right}} th{{background:#eee}}
.ok{{color:#070}} .bad{{color:#a00}}</style></head><body>
<h1>mpm-proxy status</h1>
<p>master pid {s['master_pid']}, generation {s['generation']}, up {int(s['uptime'])} s, {html.escape(s['state'])};
health: <span class="{'ok' if f['healthy'] else 'bad'}">{html.escape(f['health'])}</span>
(<a href="/healthz">/healthz</a>, <a href="/metrics">/metrics</a>, <a href="?auto">?auto</a>);
this page refreshes every {refresh} s</p>
<p>config {html.escape(s['config'])}; listeners {html.escape(', '.join(s['listeners']))}</p>
<p>{f['requests']} requests, {_size(f['received'])} received, {_size(f['sent'])} sent, {f['tunnels_opened']}
tunnels opened, {f['refused']} refused; master RSS {_size(s['master']['rss'])}</p>
<h2>Generations</h2>
{_table(["generation", "", "workers", "scoreboard", "connections", "tunnels"], gen_rows)}
<h2>Workers</h2>
{_table(["pid", "gen", "slot", "state", "connections", "tunnels", "requests", "in", "out", "RSS", "CPU s"],
        worker_rows)}
<p>Scoreboard key: S starting, _ ready and idle, W ready with connections, F full, G stopping, C exiting,
! not responding.</p>
<h2>Balancers</h2>
{_table(["balancer", "member", "route", "status", "state", "weight", "busy", "requests", "traffic", "failures"],
        member_rows) if member_rows else "<p>none configured</p>"}
</body></html>
"""
