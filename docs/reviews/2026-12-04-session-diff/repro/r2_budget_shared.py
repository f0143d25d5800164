"""Finding R2: the 10 ms is one budget for all routes of a request, and a route's `when:` search runs
before its (cheap) path check (worker/routing.py CompiledRoute.map), so every `when:` route listed
before the one that serves a request spends the budget, whatever its path.  120 routes per-service,
each `when: {header: {Cookie: "(?:^|;\\s*)beta=1"}}` (a sticky beta cohort), an ordinary browser
with an 8 KB Cookie and no beta cookie: the last services answer 500."""
from common import start, get, HttpBackend

b = HttpBackend()
routes = [{"path": f"/svc{i}/", "when": {"header": {"Cookie": r"(?:^|;\s*)beta=1"}}, "to": b.url + "/beta/"} for i in range(120)]
routes += [{"path": "/", "to": b.url + "/"}]
p = start(routes, workers=1)
try:
    cookie = b"Cookie: " + b"; ".join(b"c%03d=%s" % (i, b"v" * 60) for i in range(120)) + b"\r\n"
    print("Cookie bytes:", len(cookie))
    for target in (b"/svc1/x", b"/svc119/x", b"/other"):
        codes = [get(p, target, cookie)[0] for _ in range(20)]
        print(target.decode(), "statuses:", {c: codes.count(c) for c in set(codes)})
    print("without the Cookie:", get(p, b"/other")[0])
    print([l for l in p.error_text().splitlines() if "ran past" in l][-1:])
finally:
    p.stop()
