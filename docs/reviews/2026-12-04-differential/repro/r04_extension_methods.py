"""r04: registered HTTP methods (IANA "HTTP Method Registry") outside llhttp's fixed list are
refused by mpm with 501 before routing, where nginx (any upper-case token) and HAProxy (any
token) forward them.  Sends each method through mpm, nginx and HAProxy and prints the status.
Usage: /work/main/.venv/bin/python repro/r04_extension_methods.py"""
import os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _peers as peers

METHODS = [b"GET", b"PROPFIND", b"REPORT", b"MKCALENDAR", b"QUERY", b"VERSION-CONTROL", b"CHECKIN",
           b"UNCHECKOUT", b"MKWORKSPACE", b"UPDATE", b"LABEL", b"BASELINE-CONTROL", b"ORDERPATCH",
           b"MKREDIRECTREF", b"UPDATEREDIRECTREF", b"BIND", b"ACL", b"PURGE", b"FOO"]


def main():
    rows = {}
    for name, cls in peers.PEERS.items():
        def go(p, be):
            out = {}
            for m in METHODS:
                t0 = time.monotonic()
                resp, closed = peers.exchange(p.port, m + b" /dav/x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\n\r\n", idle=0.3)
                time.sleep(0.05)
                st = peers.statuses(resp)
                out[m] = (st[0] if st else "-") + ("/fwd" if be.heads_since(t0) else "")
            return out
        rows[name] = peers.run_with(cls, go)
    print("%-20s %-10s %-10s %-10s" % ("method", *rows))
    for m in METHODS:
        print("%-20s %-10s %-10s %-10s" % (m.decode(), *(rows[n][m] for n in rows)))


if __name__ == "__main__":
    main()
