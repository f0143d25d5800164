"""Request targets a route does not bind the way the backend resolves them, forwarded byte
for byte:
 (a) a fragment: llhttp accepts "#" in the target (RFC 9112 origin-form has none), the regex
     route `\\.css$` matches "/admin#.css", and the backend resolves the path "/admin";
 (b) "..;" / "..%2f" / "..\\" segments pass has_dot_segment (routing.py), which catches only
     "." / ".." / "%2e" forms; a Tomcat backend resolves "/static/..;/manager" to "/manager"."""
import re
from h import Backend, recv_head, start_proxy, client_exchange

def script(s, rec):
    head, _ = recv_head(s, rec)
    s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

be = Backend(script)
p = start_proxy([{"match": "^(/.*\\.css)$", "to": f"http://127.0.0.1:{be.port}/assets$1"},
                 {"path": "/static/", "to": f"http://127.0.0.1:{be.port}/static/"}])
for target in (b"/admin", b"/admin#.css", b"/static/../manager", b"/static/..;/manager", b"/static/..%2fmanager",
               b"/static/..\\manager"):
    n0 = len(be.conns)
    out = client_exchange(p.port, b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n", 0.5)
    sent = bytes(be.conns[n0]).split(b"\r\n")[0] if len(be.conns) > n0 else b"(nothing)"
    codes = re.findall(rb"HTTP/1.1 (\d+)", out)
    print("%-24s -> client %s  backend request line: %s" % (target.decode(), codes, sent.decode()))
