"""What `mpmctl status` and `mpmctl balancer` print: the master's JSON answers as the tables an
operator reads (`--json` prints the answers themselves).  Apart from the CLI's verbs, so each
module keeps one job."""

from __future__ import annotations


def _size(n: float) -> str:
    for unit in ("B", "K", "M", "G"):
        if n < 1024:
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}T"


def _h2(row: dict) -> str:
    """HTTP/2 connections / the streams open on them."""
    return f"{row.get('h2_connections', 0)}/{row.get('h2_streams', 0)}"


def format_status(s: dict) -> str:
    lines = [
        f"master pid {s['master_pid']}  generation {s['generation']}  up {s['uptime']:.0f}s  {s['state']}",
        f"config     {s['config']}",
        f"listeners  {', '.join(s['listeners'])}",
        "",
        f"{'PID':>7} {'GEN':>4} {'SLOT':>4} {'STATE':<9} {'CONNS':>6} {'TUNNELS':>7} {'H2 CONN/STRM':>12} "
        f"{'REQUESTS':>9} {'IN':>8} {'OUT':>8} {'RSS':>7} {'CPU s':>7} {'TLS FULL':>9} {'RESUMED':>9}",
    ]
    for w in s["workers"]:
        lines.append(f"{w['pid']:>7} {w['generation']:>4} {w['slot']:>4} {w['state']:<9} {w['connections']:>6} "
                     f"{w['tunnels']:>7} {_h2(w):>12} {w['requests']:>9} {_size(w['bytes_in']):>8} "
                     f"{_size(w['bytes_out']):>8} {_size(w['rss']):>7} {w['cpu_seconds']:>7.1f} "
                     f"{w.get('tls_full', 0):>9} {w.get('tls_resumed', 0):>9}")
    t = s["totals"]
    lines.append(f"{'total':>7} {'':>4} {'':>4} {'':<9} {t['connections']:>6} {t['tunnels']:>7} {_h2(t):>12} "
                 f"{t['requests']:>9} {_size(t['bytes_in']):>8} {_size(t['bytes_out']):>8} {_size(t['rss']):>7} "
                 f"{'':>7} {t.get('tls_full', 0):>9} {t.get('tls_resumed', 0):>9}")
    if s.get("tls"):
        lines.append(_format_tls(s["tls"], t))
    if s.get("old_generation_workers"):
        lines.append(f"\n{s['old_generation_workers']} worker(s) of older generations still finishing")
    return "\n".join(lines)


def _format_tls(tls: dict, totals: dict) -> str:
    """One line: how many handshakes resumed a session since the master started (reloads
    included: the workers' columns above count the live ones only), and where the ticket
    keys come from."""
    counts = tls.get("handshakes") or {"full": totals.get("tls_full", 0), "resumed": totals.get("tls_resumed", 0),
                                       "failed": totals.get("tls_failures", 0)}
    done = counts["full"] + counts["resumed"]
    rate = f"{100 * counts['resumed'] / done:.0f}% of {done} handshakes resumed" if done else \
        "no TLS handshakes yet"
    if tls.get("ticket_keys") != "shared":
        return f"\ntls        {rate}; ticket keys per generation ({tls.get('why')})"
    rotation = f", rotated every {tls['rotation']:g}s" if tls.get("rotation") else ""
    return (f"\ntls        {rate}; ticket keys {tls['source']} ({tls['keys']} in use, current one "
            f"{tls['key_age'] or 0:.0f}s old{rotation}, {tls['rotations']} rotations), {counts['failed']} "
            "failed handshakes")


def format_balancers(balancers: list) -> str:
    if not balancers:
        return "no balancers configured"
    lines = []
    for b in balancers:
        sticky = b["sticky"] and (b["sticky"] + (f"|{b['sticky_param']}" if b.get("sticky_param") else "")
                                  + (" (insert)" if b["sticky_insert"] else "")
                                  + (" nofailover" if b["nofailover"] else ""))
        hc = b["health"]
        check = "passive only" if hc is None else \
            f"{hc['method']} {hc['path'] or ''} every {hc['interval']:g}s".replace("  ", " ")
        lines.append(f"balancer://{b['name']}  method {b['method']}  sticky {sticky or '-'}  "
                     f"retry {b['retry']:g}s  health {check}")
        if b.get("discover"):
            found = sum(1 for m in b["members"] if m["source"] != "static")
            lines.append("  " + _format_discovery(b["discover"], found))
        lines.append(f"  {'MEMBER':<28} {'ROUTE':<11} {'STATUS':<12} {'STATE':<8} {'WEIGHT':>6} {'BUSY':>5} "
                     f"{'REQUESTS':>9} {'TRAFFIC':>8} {'FAILS':>6} {'MAX':>5}  {'FROM':<18} CHECK")
        for m in b["members"]:
            state = m["state"] + (f" {m['error_for']:.0f}s" if m["state"] == "error" else "")
            check = m["check"]["last"] + (f" {m['check']['age']:.0f}s ago" if m["check"]["age"] is not None else "")
            source = "static" if m["source"] == "static" else \
                "dns, " + (f"left {m['leaving_for']:.0f}s ago" if m["leaving_for"] is not None
                           else f"seen {m['seen']:.0f}s ago")
            lines.append(f"  {m['url']:<28} {m['route'] or '-':<11} {m['status']:<12} {state:<8} {m['weight']:>6} "
                         f"{m['busy']:>5} {m['requests']:>9} {_size(m['bytes']):>8} {m['failures']:>6} "
                         f"{m['max_connections'] or '-':>5}  {source:<18} {check}")
        lines.append("")
    return "\n".join(lines).rstrip()


def _format_discovery(d: dict, listed: int) -> str:
    """One line: what is asked, how it went."""
    asked = f"{d['type']} {d['dns']}" + (f" port {d['port']}" if d["port"] else "")
    if d.get("fixed"):
        return f"discover {asked}: an IP address, never asked: {listed} member"
    answered = f"last answer {d['answered']:.0f}s ago" if d["answered"] is not None else "no answer yet"
    every = f"every {d['interval']:g}s"
    if d.get("next_lookup", 0) > d["interval"]:          # the records' TTL stretched it (up to max_ttl)
        every += f" (TTL: next in {d['next_lookup']:.0f}s)"
    line = (f"discover {asked} via {', '.join(d['resolvers'])} {every}: {listed} members "
            f"in {d['slots']} slots, {answered}, {d['failures']} failed lookups")
    if d["left_out"]:
        line += f", {d['left_out']} records left out (slots)"
    if d["failing"]:
        line += f"; failing now: {d['last_error']}"
    return line
