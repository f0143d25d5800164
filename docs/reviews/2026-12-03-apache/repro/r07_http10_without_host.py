"""Name-based virtual hosts: an HTTP/1.0 request without Host (HAProxy's default httpchk, old
monitors) goes to httpd's default virtual host; mpm-proxy's guard on Host does not match a
missing header, so it gets 404."""
import os
import socket

from h import Apache, Member, Proxy, free_port, translate

A, B = Member("A"), Member("B")
port = free_port()
d, conf, r, g = translate(f"""
Listen 127.0.0.1:{port}
<VirtualHost *:{port}>
  ServerName app.test
  ProxyPass / http://127.0.0.1:{A.port}/
</VirtualHost>
<VirtualHost *:{port}>
  ServerName other.test
  ProxyPass / http://127.0.0.1:{B.port}/
</VirtualHost>
""")
ap = Apache(conf, [port]).start()
px = Proxy(os.path.join(d, "mpm"), g["routes"], **{k: v for k, v in g.items() if k not in ("listen", "control", "log", "routes")}).start()


def status(p, data):
    s = socket.create_connection(("127.0.0.1", p), timeout=5)
    s.sendall(data)
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    s.close()
    return out.split(b"\r\n", 1)[0].decode()


try:
    for req in [b"GET /health HTTP/1.0\r\n\r\n", b"OPTIONS / HTTP/1.0\r\n\r\n"]:
        print(req, "httpd:", status(port, req), "| mpm:", status(px.port, req))
finally:
    px.stop()
    ap.stop()
    A.close()
    B.close()
