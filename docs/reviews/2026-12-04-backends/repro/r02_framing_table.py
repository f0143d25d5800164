"""A table of broken response heads/bodies, each sent by the backend to `GET /c/<name>` on a
keep-alive backend connection; after each case a fresh client sends `GET /probe` and must get
exactly "probe-ok" (no pool poisoning).  Prints what the client got and how it ended."""
import socket
import sys
import time

from h import RawBackend, access, proxy, recv_all

from cases import CASES  # noqa: E402


def handler(conn):
    while True:
        head = conn.read_head()
        if head is None:
            return
        if head.target.startswith("/c/"):
            data = CASES[head.target[3:]]
            conn.send(data)
            if head.target[3:] in ("http09",):
                conn.sock.close()
                return
        else:
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nprobe-ok")


backend = RawBackend(handler)
p = proxy([{"path": "/", "to": backend.url + "/"}], timeouts={"proxy": 2})
names = sys.argv[1:] or list(CASES)
for name in names:
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    s.sendall(f"GET /c/{name} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    data, how = recv_all(s, 3)
    s.close()
    shown = data if len(data) < 300 else data[:200] + b"...(%d bytes)" % len(data)
    before = len(backend.conns)
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    s.sendall(b"GET /probe HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    probe, _ = recv_all(s, 3)
    s.close()
    reused = len(backend.conns) == before
    pok = probe.endswith(b"\r\n\r\nprobe-ok")
    print(f"{name:20s} {how:8s} {shown!r}\n{'':20s} probe {'OK' if pok else 'BAD ' + repr(probe[:120])}"
          f" {'(pooled conn reused)' if reused else ''}")
time.sleep(0.3)
print("\n--- error log")
print("\n".join(line[-160:] for line in p.error_text().splitlines() if "route" in line))
print("--- access log")
print("\n".join(line[-110:] for line in p.access_lines()[-len(names) * 2:]))
p.stop()
backend.close()
