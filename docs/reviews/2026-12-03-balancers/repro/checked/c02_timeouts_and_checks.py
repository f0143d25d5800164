"""Found sound: a member that accepts and never answers (POST and GET: 504 once, never sent again);
health checks against garbage (down) and a redirect (up, as Apache and HAProxy count 3xx)."""
import sys, time, socket, json
sys.path.insert(0, __import__("os").path.join(__import__("os").path.dirname(__import__("os").path.abspath(__file__)), ".."))
from h import RawMember, raw, start_proxy, get
silent = RawMember(lambda s, head: time.sleep(3))
ok = RawMember(lambda s, head: s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"))
garbage = RawMember(lambda s, head: s.sendall(b"SSH-2.0-OpenSSH\r\n"))
redirect = RawMember(lambda s, head: s.sendall(b"HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n"))
p = start_proxy([{"path": "/h/", "to": "balancer://hc/"}, {"path": "/", "to": "balancer://app/", "timeout": 1}], workers=1,
                balancers={"app": {"members": [{"url": silent.url}, {"url": ok.url}]},
                           "hc": {"health": {"method": "GET", "path": "/", "interval": 0.3, "timeout": 0.5},
                                  "members": [{"url": garbage.url}, {"url": redirect.url}]}})
for m in (b"POST", b"GET"):
  for i in range(2):
    t=time.monotonic()
    a = raw(p, m + b" /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi" if m==b"POST" else m+b" /x HTTP/1.1\r\nHost: a\r\n\r\n")
    print(m, a.split(b"\r\n",1)[0], "%.2fs" % (time.monotonic()-t), "silent", len(silent.heads), "ok", len(ok.heads))
time.sleep(2)
print(p.mpmctl("balancer").stdout)
print(p.error_text()[-1500:])
