"""A TLS keep-alive client (a request every 20 ms) across reloads: a TLS session cannot move to
the next generation, so the old worker closes it when idle.  Which requests got EOF, and did
any of them reach the proxy (the backend or the access log)?"""
import os
import socket
import ssl
import sys
import threading
import time

import h
import trustme

sys.path.insert(0, os.path.join(h.ROOT, "tests"))
from backends import HttpBackend  # noqa: E402
from rawsock import read_head, recv_exact  # noqa: E402
from support import cert_files, free_port  # noqa: E402

PLAIN = "--plain" in sys.argv        # the same client on the plain listener (idle connections move)
d = __import__("tempfile").mkdtemp()
ca = trustme.CA()
cert, key = cert_files(ca, d, "localhost")
backend = HttpBackend()
p = h.Proxy(d, [{"path": "/", "to": backend.url + "/"}], workers=2, log={"level": "debug"})
tls_port = free_port()
p.config["listen"] = [f"127.0.0.1:{p.port}", {"address": f"127.0.0.1:{tls_port}", "tls": {"cert": cert, "key": key}}]
p.start()
ctx = ssl.create_default_context()
ca.configure_trust(ctx)
stop, failed, sent = threading.Event(), [], [0]


def client():
    while not stop.is_set():
        s = socket.create_connection(("127.0.0.1", p.port if PLAIN else tls_port), timeout=5)
        if not PLAIN:
            s = ctx.wrap_socket(s, server_hostname="localhost")
        while not stop.is_set():
            n = sent[0] = sent[0] + 1
            try:
                s.sendall(b"GET /n%d HTTP/1.1\r\nHost: x\r\n\r\n" % n)
                data, buf = read_head(s, bytearray())
                recv_exact(s, int(data.lower().split(b"content-length:")[1].split(b"\r\n")[0]), buf)
            except (OSError, ConnectionError, IndexError) as exc:
                data = repr(exc).encode()
            if not data.startswith(b"HTTP/1.1 200"):
                failed.append((n, data[:60]))
                break
            if b"onnection: close" in data:
                break
            time.sleep(0.02)
        s.close()


t = threading.Thread(target=client, daemon=True)
t.start()
for _ in range(6):
    time.sleep(1.0)
    p.reload()
time.sleep(1.0)
stop.set()
t.join(5)
seen = {r["target"] for r in backend.requests}
log = "\n".join(p.access_lines())
print(f"{sent[0]} requests, {len(failed)} failed over 6 reloads")
for n, data in failed:
    print(f"  /n{n}: got {data!r}; reached the backend: {f'/n{n}' in seen}; "
          f"logged: {f'/n{n} ' in log}")
print("\n".join(line for line in p.error_text().splitlines() if "gen 1]" in line or "gen 2]" in line))
p.stop()
backend.close()
