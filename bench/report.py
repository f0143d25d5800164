"""From measured cells to what an operator reads: a summary per (scenario, peer), the checks,
a markdown table, a JSON file and PNG plots of the ratios to the direct connection.

A figure is the median over rounds, except memory growth (S5), which is the largest: a
process keeps the pages it touched, so a round that follows another without a reload
reuses them and would show next to nothing. A ratio is always peer ÷ direct from the same run, so
for throughput below 1 is slower than direct and for latency above 1 is slower. A cell
measured while something outside the run kept the machine busy is marked †; a cell whose
own checks failed (errors, mismatched echoes, drops) is marked !. For the 64-byte echo (S3,
S7a) the first row is the proxy's CPU per message: with one message in flight per connection
on a two-core machine, messages/s moves with whatever else shares the cores, CPU per message
much less (issue #13).
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass

from bench import stats, tools
from bench.peers import OPT_IN
from bench.scenarios import SCENARIOS

# (scenario, label, key, higher is better, format)
LINES = [
    ("S1", "requests/s", "rps", True, "int"),
    ("S1", "latency p99", "p99_s", False, "time"),
    ("S2", "requests/s", "rps", True, "int"),
    ("S2", "MiB/s", "mib_s", True, "int"),
    ("S3", "proxy CPU µs/msg", "proxy_cpu_per_unit", False, "us"),
    ("S3", "messages/s", "msgs_s", True, "int"),
    ("S3", "round trip p50", "p50_s", False, "time"),
    ("S3", "round trip p99", "p99_s", False, "time"),
    ("S4", "MiB/s", "mib_s", True, "int"),
    ("S4", "round trip p99", "p99_s", False, "time"),
    ("S5", "proxy RSS KiB/conn", "rss_per_conn_kib", False, "float"),
    ("S5", "connections opened/s", "connect_rate", True, "int"),
    ("S5", "failed to echo", "echo_failed", False, "int"),
    ("S6", "connections dropped", "dropped", False, "int"),
    ("S6", "bytes lost", "lost_bytes", False, "int"),
    ("S6", "connections stalled", "stalled", False, "int"),
    ("S6", "MiB/s while reloading", "mib_s", True, "int"),
    ("S1s", "requests/s", "rps", True, "int"),
    ("S1s", "latency p99", "p99_s", False, "time"),
    ("S7a", "proxy CPU µs/msg", "proxy_cpu_per_unit", False, "us"),
    ("S7a", "messages/s", "msgs_s", True, "int"),
    ("S7a", "round trip p99", "p99_s", False, "time"),
    ("S7b", "MiB/s", "mib_s", True, "int"),
    *((sid, label, key, True, kind) for sid in ("S7c", "S7c-ec", "S7c-12", "S7c-reload") for label, key, kind in (
        ("handshakes/s", "rps", "int"),
        ("sessions resumed, % (client check)", "resumed_pct", "int"),
        ("handshakes resumed during wrk, % (server count)", "server_resumed_pct", "int"))),
    ("S7c-reload", "sessions from before the reload resumed, %", "resumed_after_reload_pct", True, "int"),
    ("S1h2", "proxy CPU µs/req", "proxy_cpu_per_unit", False, "us"),
    ("S1h2", "requests/s", "rps", True, "int"),
    ("S1h2", "latency p99", "p99_s", False, "time"),
    ("S3h2", "proxy CPU µs/msg", "proxy_cpu_per_unit", False, "us"),
    ("S3h2", "messages/s", "msgs_s", True, "int"),
    ("S3h2", "round trip p99", "p99_s", False, "time"),
    ("S8", "failed requests", "failed", False, "int"),
    ("S8", "requests/s while reloading", "rps", True, "int"),
    ("S8", "reloads", "reloads", True, "int"),
]
HEADLINE = {"S1": "rps", "S1s": "rps", "S2": "rps", "S3": "msgs_s", "S4": "mib_s", "S5": "connect_rate", "S6": "mib_s",
            "S7a": "msgs_s", "S7b": "mib_s", "S7c": "rps", "S7c-ec": "rps", "S7c-12": "rps", "S7c-reload": "rps",
            "S8": "rps", "S1h2": "rps", "S3h2": "msgs_s"}
# The HTTP/2 scenarios, and the HTTP/1.1 one each is S1 or S3 of: set side by side per peer.
H2_OF = {"S1h2": "S1", "S3h2": "S3"}
CPU_UNITS = {"req": ("µs/req", 1e6), "msg": ("µs/msg", 1e6), "MiB": ("ms/MiB", 1e3)}


@dataclass
class Summary:
    scenario: str
    peer: str
    values: dict          # every numeric field over the rounds: median (memory growth: largest)
    rounds: int
    disturbed: int        # rounds measured under outside load
    failed: int           # rounds whose own checks failed (or that could not run)
    notes: list
    unsupported: str = ""  # the peer does not speak what the scenario needs (HTTP/2, RFC 8441)


WORST_OVER_ROUNDS = {"rss_per_conn_kib", "backend_rss_per_conn_kib"}


def _largest(values: list) -> float | None:
    return max((v for v in values if v is not None), default=None)


def summarize(cells: list[dict], scenario_ids: list[str], peer_names: list[str]) -> list[Summary]:
    out = []
    for sid in scenario_ids:
        for peer in peer_names:
            mine = [c for c in cells if c["scenario"] == sid and c["peer"] == peer]
            if not mine:
                continue
            if all("unsupported" in c for c in mine):
                out.append(Summary(sid, peer, {}, len(mine), 0, 0, [], mine[0]["unsupported"]))
                continue
            measured = [c for c in mine if "error" not in c and "unsupported" not in c]
            keys = {k for c in measured for k, v in c.items() if isinstance(v, (int, float))
                    and not isinstance(v, bool)}
            values = {k: (_largest if k in WORST_OVER_ROUNDS else stats.median)([c.get(k) for c in measured])
                      for k in sorted(keys)}
            notes = sorted({n for c in mine for n in c.get("notes", []) + ([c["error"]] if "error" in c else [])})
            out.append(Summary(sid, peer, values, len(mine), sum(1 for c in mine if c.get("disturbed")),
                               sum(1 for c in mine if not c.get("ok")), notes[:5]))
    return out


def ratio(summaries: list[Summary], sid: str, peer: str, key: str) -> float | None:
    direct = find(summaries, sid, "direct")
    mine = find(summaries, sid, peer)
    if not direct or not mine:
        return None
    d, v = direct.values.get(key), mine.values.get(key)
    return v / d if d and v is not None else None


def find(summaries: list[Summary], sid: str, peer: str) -> Summary | None:
    return next((s for s in summaries if s.scenario == sid and s.peer == peer), None)


def checks(cells: list[dict], scenario_ids: list[str]) -> list[dict]:
    """Direct must beat every proxy in every throughput cell of the same round; say so when it does not."""
    out = []
    for sid in scenario_ids:
        key = HEADLINE[sid]
        if SCENARIOS[sid].kind not in ("http", "echo"):
            continue
        for rnd in sorted({c["round"] for c in cells if c["scenario"] == sid}):
            these = [c for c in cells if c["scenario"] == sid and c["round"] == rnd and "error" not in c
                     and "unsupported" not in c]
            row = {c["peer"]: c.get(key) for c in these}
            direct = row.pop("direct", None)
            if direct is None:
                continue
            beaten = {p: v for p, v in row.items() if v is not None and v >= direct}
            disturbed = [c["peer"] for c in these if c.get("disturbed") and (c["peer"] in beaten or
                                                                             c["peer"] == "direct")]
            out.append({"scenario": sid, "round": rnd, "ok": not beaten,
                        "message": (f"{sid} round {rnd}: direct beat every proxy on {key}" if not beaten else
                                    f"{sid} round {rnd}: direct ({fmt(direct, 'int')}) did NOT beat "
                                    + ", ".join(f"{p} ({fmt(v, 'int')})" for p, v in beaten.items())
                                    + ": the backend or the load generator may be the bottleneck here"
                                    + (f" (or outside load: {', '.join(disturbed)} disturbed)" if disturbed else ""))})
    return out


def fmt(value, kind: str) -> str:
    if value is None:
        return "—"
    if kind == "time":
        return f"{value * 1e3:.2f} ms" if value >= 1e-3 else f"{value * 1e6:.0f} µs"
    if kind == "us":
        return f"{value * 1e6:.1f} µs"
    if kind == "float":
        return f"{value:.2f}"
    return f"{value:,.0f}"


def cell_text(summaries, sid, peer, key, kind) -> str:
    s = find(summaries, sid, peer)
    if s is None:
        return "—"
    if s.unsupported:
        return "not supported"
    value = s.values.get(key)
    text = fmt(value, kind)
    r = ratio(summaries, sid, peer, key) if peer != "direct" else None
    if r is not None:
        text += f" ({r:.2f}×)"
    if key in ("rss_per_conn_kib", "proxy_cpu_per_unit") and peer == "direct":
        text = "— (no proxy)"
    if s.failed:
        text += " !"
    if s.disturbed:
        text += " †"
    return text


def cpu_table(summaries: list[Summary], ids: list[str], proxies: list[str]) -> list[str]:
    """The "Proxy CPU" section: per unit of work, user and kernel apart, ratio to the lowest proxy."""
    lines: list[str] = []
    lines += ["", "## Proxy CPU", "",
              "CPU of all the proxy's processes during the measured window, per unit of work, "
              "user and kernel time apart (and in cores used). Ratio = proxy ÷ the lowest proxy "
              "(the floor, bench/floor.py, is a reference, not one of them).", ""]
    lines.append("| scenario | unit | " + " | ".join(proxies) + " |")
    lines.append("|---|---|" + "---|" * len(proxies))
    for sid in ids:
        unit = SCENARIOS[sid].cpu_unit
        if not unit:
            continue
        label, scale = CPU_UNITS[unit]
        vals = {p: (find(summaries, sid, p).values if find(summaries, sid, p) else {}) for p in proxies}
        per = {p: v.get("proxy_cpu_per_unit") for p, v in vals.items()}
        # The lowest real proxy: the floor (bench/floor.py) is what they are measured against, not one of them.
        real = [x for p, x in per.items() if x and p not in OPT_IN]
        best = min(real) if real else None
        row = []
        for p in proxies:
            x, v = per[p], vals[p]
            if x is None:
                row.append("—")
                continue
            cores = v.get("proxy_cpu_s", 0) / v["wall_s"] if v.get("wall_s") else 0
            split = ""
            if v.get("proxy_user_per_unit") is not None:
                split = f" = {v['proxy_user_per_unit'] * scale:.1f} user + {v['proxy_sys_per_unit'] * scale:.1f} sys"
            row.append(f"{x * scale:.1f}{split} ({x / best:.2f}×; {cores:.2f} cores)" if best
                       else f"{x * scale:.1f}{split}")
        lines.append(f"| {sid} | {label} | " + " | ".join(row) + " |")
    return lines


def h2_table(summaries: list[Summary], ids: list[str], proxies: list[str]) -> list[str]:
    """Proxy CPU per unit over HTTP/2 against the same peer over HTTP/1.1 (S1h2/S1, S3h2/S3)."""
    pairs = [(h2, h1) for h2, h1 in H2_OF.items() if h2 in ids and h1 in ids]
    if not pairs:
        return []
    lines = ["", "## HTTP/2 against HTTP/1.1", "",
             "Proxy CPU per request (S1) and per message (S3): over HTTP/2 with TLS ÷ over HTTP/1.1 in the clear, "
             "per peer.", "", "| pair | " + " | ".join(proxies) + " |", "|---|" + "---|" * len(proxies)]
    for h2, h1 in pairs:
        row = []
        for p in proxies:
            a, b = find(summaries, h2, p), find(summaries, h1, p)
            if a is not None and a.unsupported:
                row.append("not supported")
                continue
            x = a.values.get("proxy_cpu_per_unit") if a else None
            y = b.values.get("proxy_cpu_per_unit") if b else None
            row.append(f"{x * 1e6:.1f} ÷ {y * 1e6:.1f} µs = {x / y:.2f}×" if x and y else "—")
        lines.append(f"| {h2} ÷ {h1} | " + " | ".join(row) + " |")
    return lines


def markdown(results: dict) -> str:
    meta, summaries = results["meta"], [Summary(**s) for s in results["summary"]]
    peers = [p for p in meta["peers_run"]]
    ids = meta["scenarios"]
    lines = [f"# Benchmark results — {meta['started']} ({meta['mode']})", ""]
    lines.append(f"Machine: {meta['machine']['cpus']} CPUs, {meta['machine']['cpu_model']}, "
                 f"Linux {meta['machine']['kernel']}, Python {meta['machine']['python']}; "
                 f"load average at start {meta['machine']['loadavg_start']:.2f}. HTTP load: {meta['http_tool']}; "
                 f"WebSocket load: {meta.get('ws_tool', 'bench/loadgen_ws.py')}. Rounds: {meta['rounds']}, "
                 f"{meta['duration']} s per cell, peers interleaved (order rotated each round).")
    lines.append("")
    lines.append("Peers: " + ", ".join(f"{p} {meta['versions'].get(p, '')}".strip() for p in peers))
    for name, why in meta["not_run"].items():
        lines.append(f"- **{name}: not measured** — {why}")
    for sid, why in meta.get("skipped", {}).items():
        lines.append(f"- **{sid} {SCENARIOS[sid].title}: skipped** — {why}")
    lines += ["", "## Summary", "",
              "Median over rounds (memory growth: the largest round); (ratio) = peer ÷ direct from the same run. "
              "† = measured under outside load; ! = the cell's own checks failed (see notes).", ""]
    lines.append("| scenario | figure | " + " | ".join(peers) + " |")
    lines.append("|---|---|" + "---|" * len(peers))
    for sid, label, key, _hib, kind in LINES:
        if sid in ids and sid not in meta.get("skipped", {}):
            lines.append(f"| {sid} {SCENARIOS[sid].title} | {label} | "
                         + " | ".join(cell_text(summaries, sid, p, key, kind) for p in peers) + " |")
    proxies = [p for p in peers if p != "direct"]
    if proxies:
        lines += cpu_table(summaries, [sid for sid in ids if sid not in meta.get("skipped", {})], proxies)
    lines += h2_table(summaries, ids, proxies)
    lines += ["", "## Checks", ""]
    for c in results["checks"]:
        lines.append(f"- {'ok' if c['ok'] else '**WARNING**'}: {c['message']}")
    if not results["checks"]:
        lines.append("- (no throughput scenario with both direct and a proxy)")
    disturbed = [c for c in results["cells"] if c.get("disturbed")]
    lines.append(f"- outside load: {len(disturbed)} of {len(results['cells'])} cells measured while more than "
                 f"{meta['disturbed_threshold']} cores were busy outside the run" + (" (marked †)" if disturbed else ""))
    notes = [(s.scenario, s.peer, n) for s in summaries for n in s.notes]
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {sid} {peer}: {n}" for sid, peer, n in notes]
    if not tools.has_module("matplotlib"):
        lines.append("- no plots: matplotlib is missing (`python -m bench --setup` installs it)")
    lines += ["", "Configs: generated by bench/configs.py (2 workers each, access logs off, keep-alive limits "
              "lifted, TLS terminated at the proxy with the backend plain).", ""]
    return "\n".join(lines)


def plots(results: dict, outdir: str) -> list[str]:
    """PNG bar charts of the ratios; none (and a note) when matplotlib is missing."""
    if not tools.has_module("matplotlib"):
        return []
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    summaries = [Summary(**s) for s in results["summary"]]
    proxies = [p for p in results["meta"]["peers_run"] if p != "direct"]
    ids = [sid for sid in results["meta"]["scenarios"]
           if (d := find(summaries, sid, "direct")) is not None and not d.unsupported]
    written = []
    charts = [("ratios.png", "throughput ÷ direct (higher is better)", lambda sid: HEADLINE[sid]),
              ("latency.png", "round-trip p99 ÷ direct (lower is better)",
               lambda sid: "p99_s" if SCENARIOS[sid].kind in ("http", "echo") else None)]
    for name, title, key_of in charts:
        shown = [sid for sid in ids if key_of(sid)]
        if not shown or not proxies:
            continue
        fig, ax = plt.subplots(figsize=(min(12, max(6, 0.35 * len(shown) * len(proxies) + 2)), 4.5))
        width = 0.8 / len(proxies)
        for i, peer in enumerate(proxies):
            vals = [ratio(summaries, sid, peer, key_of(sid)) or 0 for sid in shown]
            ax.bar([x + i * width for x in range(len(shown))], vals, width, label=peer)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks([x + width * (len(proxies) - 1) / 2 for x in range(len(shown))])
        ax.set_xticklabels([f"{sid}\n{HEADLINE[sid] if name == 'ratios.png' else 'p99'}" for sid in shown])
        ax.set_title(title)
        ax.legend()
        fig.tight_layout()
        path = os.path.join(outdir, name)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def machine_info(loadavg_start: float) -> dict:
    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model or "?", "kernel": platform.release(),
            "python": platform.python_version(), "loadavg_start": loadavg_start}


def write(results: dict, outdir: str) -> dict:
    os.makedirs(outdir, exist_ok=True)
    results["files"] = {"json": os.path.join(outdir, "results.json"), "markdown": os.path.join(outdir, "results.md")}
    results["files"]["plots"] = plots(results, outdir)
    with open(results["files"]["markdown"], "w") as f:
        f.write(markdown(results))
    with open(results["files"]["json"], "w") as f:
        json.dump(results, f, indent=1, default=str)
    return results["files"]
