"""A request target that urlsplit refuses ("http://[") gets a 500 from the admin listener and
a traceback in the master's error log, each time: a client admin.allow lists can flood it."""
import socket
import time

from h import FastBackend, start_proxy
from admin_util import admin_section, admin_port
b = FastBackend()
p = start_proxy([{"path": "/", "to": b.url + "/"}], workers=1, admin=admin_section())
port = admin_port(p)
for target in (b"http://[", b"/metrics?%", b"//[::1", b"/server-status?refresh=99999999999999999999"):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n")
        d = b""
        while (c := s.recv(65536)): d += c
    print(target, d.split(b"\r\n")[0])
time.sleep(0.3)
print("tracebacks:", open(p.error_log).read().count("Traceback"))
p.stop()
