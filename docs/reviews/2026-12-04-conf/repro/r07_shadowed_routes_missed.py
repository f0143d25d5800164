"""r07: the "route is never used" check misses shadowing the workers do.

Workers match `path` as a plain byte prefix (worker/routing.py Route.map: target.startswith(prefix)),
so `path: /api` catches /api/v2/... and /apiv2 too.  conf/routes.py _check_shadowed only reports a
later route when the earlier prefix ends in "/" or is equal, so `/api` followed by `/api/v2` is
accepted and the second route never gets a request; with `/api/` first the same mistake is refused.
Two identical `match` routes are not reported either, nor a `path` with a dot-segment ("/a/../b/"),
which no request can match (workers refuse requests with dot-segments, worker/routing.py
refused_target).

Steps: load [/api -> A, /api/v2 -> B] and [/api/ -> A, /api/v2 -> B]; start the first and GET /api/v2/x.
PASS when the loader reports the unreachable route in both cases (or the request reaches B)."""
from _common import HttpBackend, Proxy, get, load, verdict, workdir

a = HttpBackend(lambda req, body: (200, [("Content-Type", "text/plain")], b"backend-A"))
b = HttpBackend(lambda req, body: (200, [("Content-Type", "text/plain")], b"backend-B"))
head = 'listen: ["127.0.0.1:18080"]\nroutes:\n'
cases = {
    "/api then /api/v2": head + f'  - {{path: /api, to: "{a.url}/"}}\n  - {{path: /api/v2, to: "{b.url}/"}}\n',
    "/api/ then /api/v2": head + f'  - {{path: /api/, to: "{a.url}/"}}\n  - {{path: /api/v2, to: "{b.url}/"}}\n',
    "same match twice": head + f'  - {{match: "^/x", to: "{a.url}/"}}\n  - {{match: "^/x", to: "{b.url}/"}}\n',
    "path with a dot-segment": head + f'  - {{path: /a/../b/, to: "{a.url}/"}}\n',
}
reported = {}
for name, text in cases.items():
    kind, result = load(text)
    reported[name] = kind == "ERR"
    print(f"{name}: {'refused: ' + result.split(': ', 1)[1] if kind == 'ERR' else 'accepted'}")
proxy = Proxy(workdir(), [{"path": "/api", "to": a.url + "/"}, {"path": "/api/v2", "to": b.url + "/"}], workers=1)
try:
    proxy.start()
    answer = get(proxy, "/api/v2/x")
    print("GET /api/v2/x ->", answer.rsplit(b"\r\n\r\n", 1)[-1])
finally:
    proxy.stop()
verdict(all(reported.values()) or b"backend-B" in answer,
        "unreachable routes accepted: " + ", ".join(n for n, r in reported.items() if not r))
