"""One line per sample of a soak run (samples.jsonl): what grows, what drifts."""

import json
import sys


def line(row: dict, t0: float) -> str:
    procs = row.get("procs", [])
    fds = "/".join(str(sum(p.get("fds", {}).values())) for p in procs)
    pipes = "/".join(str(p.get("fds", {}).get("pipe", 0)) for p in procs)
    rss = "/".join(str(p.get("rss_kb", 0) // 1024) for p in procs)
    ws = row.get("workers", [])
    conns = "/".join(f"{w['connections']},{w['tunnels']},{w.get('h2_connections')}:{w['generation']}" for w in ws)
    m = row.get("metrics", {})
    px = row.get("sockets_proxy", {})
    be = row.get("sockets_backends", {})
    cw = px.get("CLOSE-WAIT", 0) + sum(v.get("CLOSE-WAIT", 0) for v in be.values())
    est_be = sum(v.get("ESTAB", 0) for v in be.values())
    busy = [m_["busy"] for b in row.get("balancer", {}).get("balancers", []) for m_ in b["members"]]
    return (f"{row['t'] - t0:6.0f}s g{row.get('generation')} fds {fds} pipes {pipes} rssMB {rss} "
            f"w(c,t,h2:g) {conns} est {px.get('ESTAB', 0)} beEST {est_be} TW {px.get('TIME-WAIT', 0)} CW {cw} "
            f"tun {m.get('mpm_tunnels_opened_total', 0):.0f}-{m.get('mpm_tunnels_closed_total', 0):.0f} "
            f"busy {busy} z {row.get('zombies')} ch {row.get('children')}")


def main() -> None:
    rows = [json.loads(x) for x in open(sys.argv[1])]
    t0 = rows[0]["baseline"]["t"]
    for row in rows:
        row = row.get("baseline") or row.get("final") or row
        print(line(row, t0))


if __name__ == "__main__":
    main()
