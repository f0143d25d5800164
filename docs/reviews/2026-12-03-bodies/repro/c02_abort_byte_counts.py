"""A client reads 1 MiB of a 100 MiB response, then closes: what the access log says was sent
(and what /metrics' byte counters say) against what crossed."""
import json
import socket
import time
import urllib.request

from h import RawBackend, access, proxy

BIG = 100 << 20


def handler(conn):
    head = conn.read_head()
    if head is None:
        return
    try:
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BIG)
        for _ in range(100):
            conn.send(b"z" * (1 << 20))
    except OSError:
        conn.backend.results["backend saw the close"] = True


for splice in ("1", "0"):
    backend = RawBackend(handler)
    p = proxy([{"path": "/", "to": backend.url + "/"}], environ={"MPM_SPLICE": splice}, log={"format": "json"})
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    s.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
    got = 0
    while got < (1 << 20):
        got += len(s.recv(65536))
    s.close()
    line = access(p, "/big")
    entry = json.loads(line[0]) if line else {}
    time.sleep(0.3)
    print(f"splice={splice}: client read {got}; log status {entry.get('status')} bytes_sent {entry.get('bytes_sent')} "
          f"({entry.get('connection')}); backend saw the close: {backend.results.get('backend saw the close')}")
    p.stop()
    backend.close()
