"""r05: a route `match:` (or `when.header`) regex with nested quantifiers is accepted, and one request
then holds a worker's whole event loop: Python's `re` has no match limit, so `^/(a+)+$` against
"/" + 40 x "a" + "!" backtracks ~2^40 steps.  Every other connection of that worker waits (with one
worker: the whole server) until the watchdog kills it (mpm.watchdog, 30 s by default); the client can
send it again.  Apache and nginx match with PCRE, whose match limit (10,000,000 by default) ends such a
match with an error instead.

Cause: conf/routes.py _regex compiles any pattern; worker/routing.py Route.map runs regex.search on
the raw path with no limit.

Steps: workers: 1; routes [match "^/(a+)+$", path /]; send the one bad request; 0.5 s later GET /ok.
PASS when /ok is answered within 5 s (or configtest rejects the pattern)."""
import time

from _common import HttpBackend, Proxy, get, verdict, workdir

backend = HttpBackend()
proxy = Proxy(workdir(), [{"match": "^/(a+)+$", "to": backend.url + "/"}, {"path": "/", "to": backend.url + "/"}],
              workers=1)
proxy.write_config()
check = proxy.mpmctl("configtest")
print(f"configtest: rc {check.returncode}: {(check.stdout + check.stderr).strip()}")
if check.returncode != 0:
    verdict(True, "pattern rejected")
try:
    proxy.start()
    print("before:", get(proxy, "/ok", 3)[:12])
    bad = proxy.connect()
    bad.sendall(b"GET /" + b"a" * 40 + b"! HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.5)
    t0 = time.monotonic()
    answer = get(proxy, "/ok", 5)
    waited = time.monotonic() - t0
    print(f"GET /ok during: {answer[:12]!r} after {waited:.1f} s")
    bad.close()
finally:
    proxy.stop()
verdict(answer.startswith(b"HTTP/1.1 200"), "one 50-byte request stopped the worker's loop")
