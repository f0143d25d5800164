"""README line 45: match/when regexes.  (a) ^/(a+)+$ on a crafted 42-byte path: 500 in ~10 ms,
error log names the route.  (b) "reads them as re does": a POSIX class [[:alpha:]] means one
thing to re (searched untimed, no repeat) and another to regex (once a repeat is added)."""
import os, re, sys, tempfile, time, warnings
sys.path.insert(0, "/work/main/tests")
from backends import HttpBackend
from proxyproc import Proxy, raw_exchange, wait_log

backend = HttpBackend(lambda req, body: (200, [("Content-Type", "text/plain")], ("backend " + req["target"]).encode()))
routes = [
    {"match": "^/(a+)+$", "to": backend.url + "/evil"},
    {"match": "^/p[[:alpha:]]+$", "to": backend.url + "/posix-repeat"},   # has '+': regex module
    {"match": "^/q[[:alpha:]]$", "to": backend.url + "/posix-single"},    # no repeat: re
    {"path": "/h", "when": {"header": {"X-T": "^[[:digit:]]{2}$"}}, "to": backend.url + "/hdr"},
]
d = tempfile.mkdtemp(prefix="rev-readme-regex-")
p = Proxy(d, routes, workers=1)
try:
    p.start()
    def get(path, extra=b""):
        t = time.monotonic()
        r = raw_exchange(p, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + extra + b"\r\n")
        return r.split(b"\r\n", 1)[0].decode(), r.rsplit(b"\r\n\r\n", 1)[-1][:40], time.monotonic() - t
    path = b"/" + b"a" * 40 + b"!"
    print("len", len(path), get(path))
    print(wait_log(p, "route").strip().splitlines()[-1])
    for path in (b"/pabc", b"/pa]", b"/p:]]", b"/qa", b"/qa]", b"/q:]"):
        print(path, get(path)[:2])
    for v in (b"12", b"1]", b"]]"):
        print("X-T", v, get(b"/h", b"X-T: " + v + b"\r\n")[:2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        print("python re: ^/p[[:alpha:]]+$ on /pa] ->", bool(re.search(rb"^/p[[:alpha:]]+$", b"/pa]")),
              "; on /pabc ->", bool(re.search(rb"^/p[[:alpha:]]+$", b"/pabc")))
finally:
    p.stop()
    backend.close()
