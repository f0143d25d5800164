"""Patterns configtest accepts whose routing differs from what re (the documented syntax, and
configtest's own reading) says.  cd /tmp/rev-fixes/tests && /work/main/.venv/bin/python THIS"""
import sys, os, tempfile, re
sys.path.insert(0, os.getcwd())
from proxyproc import Proxy, raw_exchange
from rawbackend import RawBackend
from rawsock import status_of

backend = RawBackend()
routes = [
    {"match": r"(?x) ^/v/ a{1, 2} $", "to": backend.url + "/v"},
    {"match": r"^/f/x{2i+2d+1s<=4}$", "to": backend.url + "/f"},
    {"match": r"^/g/\\{e}x*$", "to": backend.url + "/g"},
]
d = tempfile.mkdtemp(prefix="rev-fixes-")
proxy = Proxy(d, routes, workers=1)
try:
    proxy.start()
    for path in ["/v/aa", "/v/a{1,2}", "/f/", "/f/x{2i+2d+1s<=4}", "/g/x", "/g/%5C{e}x"]:
        target = path.replace("%5C", "\\")
        expect = any(re.search(r["match"].encode(), target.encode()) for r in routes)
        got = status_of(raw_exchange(proxy, f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()))
        print(f"{target:22} re says {'routed' if expect else '404':6}  proxy answered {got}")
finally:
    proxy.stop(); backend.close()
