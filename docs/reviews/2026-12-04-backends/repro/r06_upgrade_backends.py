"""Backends that answer an upgrade request badly (HTTP/1.1 client, route `upgrade: websocket`)."""
import socket
import time

from h import RawBackend, access, proxy, recv_all

ACCEPT_OK = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="      # for the RFC 6455 sample key below
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
R101 = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n"
CASES = {
    "extra_bytes": R101.format(ACCEPT_OK).encode() + b"\x81\x05hello",
    "then_close": R101.format(ACCEPT_OK).encode(),
    "wrong_accept": R101.format("AAAAAAAAAAAAAAAAAAAAAAAAAAA=").encode() + b"\x81\x02hi",
    "no_accept": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    "other_proto": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
    "no_upgrade_hdr": b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n",
    "ok_200": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno",
    "cl_101": R101.format(ACCEPT_OK).encode()[:-2] + b"Content-Length: 5\r\n\r\n\x81\x03abc",
    "continue_then_101": b"HTTP/1.1 100 Continue\r\n\r\n" + R101.format(ACCEPT_OK).encode() + b"\x81\x02hi",
    "http10_101": b"HTTP/1.0 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x02hi",
}


def handler(conn):
    while True:
        head = conn.read_head()
        if head is None:
            return
        name = head.target.rsplit("/", 1)[-1]
        conn.send(CASES[name])
        if name == "then_close":
            conn.sock.close()
            return
        if name != "ok_200":
            time.sleep(0.5)
            try:
                conn.sock.sendall(b"\x81\x04late")
            except OSError:
                pass
            time.sleep(0.5)
            return


backend = RawBackend(handler)
p = proxy([{"path": "/ws/", "to": backend.url + "/"}])
for name in CASES:
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    s.sendall(f"GET /ws/{name} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    data, how = recv_all(s, 2)
    s.close()
    print(f"{name:18s} {how:8s} {data[:200]!r}")
time.sleep(1)
print("\n".join(x[-120:] for x in p.access_lines()))
print("\n".join(x[-140:] for x in p.error_text().splitlines() if "error" in x))
p.stop()
backend.close()
