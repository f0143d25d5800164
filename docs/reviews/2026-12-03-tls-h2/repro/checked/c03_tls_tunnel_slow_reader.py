"""TLS WebSocket tunnel (wss to the proxy, plain to the backend): a backend that floods a client
that never reads; then a client that floods a backend that never reads.  Worker RSS and what
the proxy takes before back-pressure stops it."""
import os, sys, socket, ssl, time, psutil, threading
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from h import Backend, cert_files, client_context, recv_head, start_proxy

MODE = {}
SENT = {"n": 0}


def ws_backend(s, rec):
    recv_head(s, rec)
    s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
    if MODE["m"] == "flood":
        s.settimeout(0.5)
        chunk = b"y" * (1 << 20)
        end = time.time() + 3
        while time.time() < end:
            try:
                SENT["n"] += s.send(chunk)
            except (socket.timeout, BlockingIOError):
                pass
            except OSError:
                return
    else:
        time.sleep(4)


be = Backend(ws_backend)
be.ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
cert, key = cert_files("localhost", "127.0.0.1")
p = start_proxy([{"path": "/", "to": f"http://127.0.0.1:{be.port}/"}],
                listen=lambda port: [{"address": f"127.0.0.1:{port}", "tls": {"cert": cert, "key": key},
                                      "http2": False}])
proc = psutil.Process(p.worker_pids()[0])
for m in ("flood", "sink"):
    MODE["m"] = m
    SENT["n"] = 0
    raw = socket.create_connection(("127.0.0.1", p.port))
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    c = client_context().wrap_socket(raw, server_hostname="localhost")
    c.sendall(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = c.recv(4096)
    rss0 = proc.memory_info().rss
    if m == "flood":
        time.sleep(3.2)
        print(f"backend -> never-reading TLS client: backend got {SENT['n'] >> 10} KiB out in 3 s; worker RSS "
              f"+{(proc.memory_info().rss - rss0) >> 10} KiB")
    else:
        c.setblocking(False)
        sent, t0 = 0, time.time()
        while time.time() - t0 < 3:
            try:
                sent += c.send(b"z" * 65536)
            except (ssl.SSLWantWriteError, BlockingIOError):
                time.sleep(0.01)
        print(f"TLS client -> never-reading backend: client got {sent >> 10} KiB out in 3 s; worker RSS "
              f"+{(proc.memory_info().rss - rss0) >> 10} KiB")
    c.close()
    time.sleep(0.3)
p.stop()
