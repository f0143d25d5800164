"""Checked, found sound: a TLS WebSocket tunnel whose client sends as fast as it can (read-ahead
on; `Tunnel._copy` reads again while `buffered()`): does one tunnel keep the worker's loop
(every other connection waiting)?  Measured: no, the victim's worst latency stays in the tens
of ms.  1 worker; the victim is a keep-alive HTTP/1.1 client on a second (plain) listener."""
import socket, ssl, threading, time
import os, sys
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from h import Backend, Victim, cert_files, client_context, ok_script, recv_head, start_proxy
from support import free_port

COUNT = {"n": 0}


def ws_backend(s, rec):
    """Plain GETs get a small 200 (keep-alive); an upgrade gets 101, then everything is read and counted."""
    buf = bytearray()
    while True:
        try:
            head, buf = recv_head(s, rec, buf)
        except (ConnectionError, OSError):
            return
        if b"upgrade: websocket" in head.lower():
            break
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
    s.settimeout(10)
    big = bytearray(1 << 20)
    while True:
        n = s.recv_into(big)
        if not n:
            return
        COUNT["n"] += n


be = Backend(ws_backend)
cert, key = cert_files("localhost", "127.0.0.1")
plain_port = free_port()
p = start_proxy([{"path": "/", "to": f"http://127.0.0.1:{be.port}/"}],
                listen=lambda port: [{"address": f"127.0.0.1:{port}", "tls": {"cert": cert, "key": key},
                                      "http2": False},
                                     f"127.0.0.1:{plain_port}"])

v = Victim(plain_port)
time.sleep(1.0)
base, n = v.worst()
print(f"victim idle worst latency: {base:.1f} ms over {n} requests")

raw = socket.create_connection(("127.0.0.1", p.port))
c = client_context().wrap_socket(raw, server_hostname="localhost")
c.sendall(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
resp = c.recv(4096)
print("upgrade answer:", resp.split(b"\r\n")[0])
chunk = b"\x82\x7f" + (len(b"x" * (1 << 20)) - 10).to_bytes(8, "big") + b"x" * ((1 << 20) - 10)   # opaque bytes
t0 = time.time()
sent = 0
while time.time() - t0 < 3.0:
    c.sendall(chunk)
    sent += len(chunk)
took = time.time() - t0
time.sleep(0.3)
worst, n = v.worst(since=t0)
lat = sorted(l for t, l in v.lat if t >= t0)
print(f"client sent {sent >> 20} MiB in {took:.1f} s through the TLS tunnel; backend got {COUNT['n'] >> 20} MiB")
print(f"victim during it: {n} requests answered in {took:.1f} s (idle: one per ~20 ms), worst latency {worst:.0f} ms, "
      f"median {1000 * lat[len(lat) // 2] if lat else float('nan'):.1f} ms")
v.stop()
c.close()
p.stop()
