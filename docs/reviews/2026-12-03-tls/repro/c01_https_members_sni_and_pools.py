"""c01 (found sound): https balancer members that share one address but differ in name.
One TLS backend records the SNI of each connection.  Members: https://localhost:P,
https://127.0.0.1:P, and https://127.0.0.2:P2 with tls.server_name alias.test (a name the
backend's certificate does not hold), with health checks over TLS.  Expected: each member
has its own pooled connection (reused), sends its own SNI (none for an IP, RFC 6066), and
only the alias member fails verification (health check down, no request sent there)."""
import socket
import ssl
import threading
import time

import h
from support import wait_for

ca = h.trustme.CA()
ca_file = h.write("ca.pem", ca.cert_pem.bytes())
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(*h.pair(ca, "be", "localhost", "127.0.0.1"))
served = []
connections = []            # (SNI, first request line) per backend connection
context.sni_callback = lambda sslobj, name, ctx: setattr(sslobj, "sni", name)
sockets = []
for address in ("127.0.0.1", "127.0.0.2"):
    ls = socket.socket()
    ls.bind((address, 0))
    ls.listen(16)
    sockets.append(ls)
port, port2 = (s.getsockname()[1] for s in sockets)


def serve(raw):
    try:
        with context.wrap_socket(raw, server_side=True) as conn:
            while True:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                served.append(data.split(b"\r\n")[0])
                if len(served) and data.startswith(b"GET /x") and not getattr(conn, "counted", False):
                    conn.counted = True
                    connections.append(getattr(conn, "sni", None))
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    except (OSError, ssl.SSLError):
        return


for ls in sockets:
    threading.Thread(target=lambda ls=ls: [threading.Thread(target=serve, args=(ls.accept()[0],), daemon=True).start()
                                           for _ in iter(int, 1)], daemon=True).start()
tls = {"ca": ca_file}
health = {"method": "GET", "path": "/health", "interval": 0.3, "passes": 1, "fails": 1, "timeout": 1}
members = [{"url": f"https://localhost:{port}", "tls": tls, "route": "name"},
           {"url": f"https://127.0.0.1:{port}", "tls": tls, "route": "ip"},
           {"url": f"https://127.0.0.2:{port2}", "tls": dict(tls, server_name="alias.test"), "route": "alias"}]
p = h.proxy(None, [{"path": "/", "to": "balancer://c/"}], balancers={"c": {"members": members, "health": health}})
time.sleep(1.5)
sock = socket.create_connection(("127.0.0.1", p.port), timeout=5)
answers = []
for _ in range(8):
    sock.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
    data = b""
    while not data.endswith(b"ok"):
        data += sock.recv(4096)
    answers.append(data.split(b"\r\n")[0].decode())
sock.close()
requests = [s for s in served if s.startswith(b"GET /x")]
print("answers:", set(answers), "requests at the backend:", len(requests))
print("connections that carried requests, by SNI:", sorted(map(str, connections)))
print("mpmctl balancer:")
print(p.mpmctl("balancer").stdout)
print([line[-120:] for line in p.error_text().splitlines() if "alias" in line or "verify" in line.lower()][:3])
