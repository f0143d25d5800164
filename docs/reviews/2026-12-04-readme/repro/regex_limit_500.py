"""README line 45: a search past 10 ms of CPU -> 500 and an error line naming the route.
(^/(a+)+$ from the README is not slow under the regex module; ^/(a|aa)+$ is.)"""
import sys, tempfile, time
sys.path.insert(0, "/work/main/tests")
from backends import HttpBackend
from proxyproc import Proxy, raw_exchange, wait_log

backend = HttpBackend()
routes = [{"match": "^/(a|aa)+$", "to": backend.url + "/"},
          {"match": "^/(a+)+$", "to": backend.url + "/"},
          {"path": "/c", "when": {"header": {"Cookie": "(a|aa)+$"}}, "to": backend.url + "/"}]
d = tempfile.mkdtemp(prefix="rev-readme-limit-")
p = Proxy(d, routes, workers=1)
try:
    p.start()
    for path, extra in ((b"/" + b"a" * 40 + b"!", b""), (b"/c", b"Cookie: " + b"a" * 40 + b"!\r\n")):
        t = time.monotonic()
        r = raw_exchange(p, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + extra + b"\r\n")
        print(path[:12], r.split(b"\r\n", 1)[0], f"{(time.monotonic() - t) * 1000:.1f} ms")
    time.sleep(0.3)
    print("\n".join(l for l in p.error_text().splitlines() if "error" in l or "regex" in l or "500" in l))
    print("\n".join(p.access_lines()))
finally:
    p.stop()
    backend.close()
