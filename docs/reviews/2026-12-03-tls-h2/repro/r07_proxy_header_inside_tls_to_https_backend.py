"""`proxy_protocol: v1|v2` on an https:// backend: mpm sends the PROXY header *inside* the TLS
session (as the first application bytes, ahead of the request head) instead of in clear
before the ClientHello.  A PROXY-aware TLS server (nginx `listen 443 ssl proxy_protocol`,
HAProxy `bind ... accept-proxy ssl`, Apache mod_remoteip) reads the header first, finds a
ClientHello, and drops the connection: every request is a 502.  (mpm's own health checks do
it right: mpm/health.py sends the header before starting TLS.)
Part 1: a strict backend that, like nginx, requires the header before TLS.
Part 2: a lenient backend that shows where the header went."""
import socket, ssl, tempfile
from h import Backend, ca, read_all, recv_head, server_context, start_proxy

SIG2 = b"\r\n\r\n\x00\r\nQUIT\n"
sctx = server_context("127.0.0.1")
seen = []


def read_proxy_header(s):
    """The PROXY header in clear at the start of the connection, or None (nothing consumed)."""
    first = s.recv(16, socket.MSG_PEEK)
    if first.startswith(b"PROXY "):
        line = b""
        while not line.endswith(b"\r\n"):
            line += s.recv(1)
        return line
    if first.startswith(SIG2):
        hdr = s.recv(16)
        return hdr + s.recv(int.from_bytes(hdr[14:16], "big"))
    return None


def serve_tls(s, rec):
    t = sctx.wrap_socket(s, server_side=True)
    buf = bytearray()
    while True:
        try:
            head, buf = recv_head(t, rec, buf)
        except (ConnectionError, OSError):
            return
        t.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


def strict(s, rec):           # nginx: "broken header" -> close
    hdr = read_proxy_header(s)
    seen.append(("strict", hdr, s.recv(6, socket.MSG_PEEK)))
    if hdr is None:
        return
    serve_tls(s, rec)


def lenient(s, rec):
    hdr = read_proxy_header(s)
    seen.append(("lenient", hdr, s.recv(6, socket.MSG_PEEK)))
    serve_tls(s, rec)


capath = tempfile.mktemp(suffix=".pem")
ca().cert_pem.write_to_path(capath)
b_strict, b_lenient = Backend(strict), Backend(lenient)
routes = []
for v in ("v1", "v2"):
    routes.append({"path": f"/strict-{v}/", "to": f"https://127.0.0.1:{b_strict.port}/", "tls": {"ca": capath},
                   "proxy_protocol": v})
    routes.append({"path": f"/lenient-{v}/", "to": f"https://127.0.0.1:{b_lenient.port}/", "tls": {"ca": capath},
                   "proxy_protocol": v})
p = start_proxy(routes)
for path in ("/strict-v1/", "/strict-v2/", "/lenient-v1/", "/lenient-v2/"):
    seen.clear()
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    s.sendall(b"GET %sa HTTP/1.1\r\nHost: a\r\n\r\n" % path.encode())
    ans = read_all(s, 2.5, limit=40)
    s.close()
    who, hdr, first = seen[0] if seen else ("?", None, b"")
    print(f"GET {path:12s} -> {ans[:24]!r}; backend: PROXY header before TLS: {hdr!r}, first bytes {first!r}")
    if who == "lenient":
        rec = bytes(b_lenient.conns[-1])
        print(f"    inside the TLS session the backend read: {rec[:60]!r}")
print("error log:", [l[l.find("route"):][:150] for l in p.error_text().splitlines() if "route" in l])
p.stop()
