"""c03 (found sound): an IPv4 client, and the same address named by a PROXY header as IPv4 or as
IPv4-mapped IPv6 (v1 TCP6, v2 INET6), is one client for the limits.  (IPv6 listeners are
IPV6_V6ONLY, mpm/listeners.py:47, so a socket never shows a mapped peer.)"""
from h import Backend, connect, start_proxy, status_of
from support import free_port

from worker.proxyproto import header

backend = Backend()
pp_port = free_port()
p = start_proxy([{"path": "/", "to": backend.url + "/"}], workers=1,
                limits={"per_client": {"connections": 1}},
                listen=lambda port: [f"127.0.0.1:{port}", {"address": f"127.0.0.1:{pp_port}", "proxy_protocol": True}])
first = connect(p.port, "127.0.0.8")
first.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
print("first, IPv4 listener:", status_of(first))
for preface in (header(2, b"::ffff:127.0.0.8", 1, b"::1", 80), b"PROXY TCP6 ::ffff:127.0.0.8 ::1 1 80\r\n",
                b"PROXY TCP4 127.0.0.8 127.0.0.1 1 80\r\n"):
    s = connect(pp_port, "127.0.0.1")
    s.sendall(preface + b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    print("PROXY-named", preface[:40], "->", status_of(s), "(expected reset/closed)")
    s.close()
first.close()
