"""Cost of the regex timer per routing (sans-IO timing of Router.resolve, timed vs untimed)."""
import sys, time
sys.path.insert(0, "/work/main")
from conf import load_config
from conf.model import Limits
from worker.backend import Origins
from worker.http1 import parse_request
from worker.routing import Router
open("/tmp/rc.yaml", "w").write('listen: ["127.0.0.1:8000"]\nroutes:\n'
  '  - {match: "^/u/([a-z]+)$", to: "http://127.0.0.1:9001/users/$1"}\n'
  '  - {path: "/", to: "http://127.0.0.1:9001/"}\n')
r = Router(load_config("/tmp/rc.yaml").routes, 300.0, Origins())
head = parse_request(b"GET /api/x HTTP/1.1\r\nHost: h\r\n\r\n", Limits())
N = 200000
for name, f in [("timed resolve", lambda: r.resolve(head.target, head)),
                ("untimed _first_match", lambda: r._first_match(head.target, head))]:
    best = 1e9
    for _ in range(5):
        t = time.process_time()
        for _ in range(N): f()
        best = min(best, (time.process_time() - t) / N)
    print(f"{name:22} {best*1e6:.2f} us/request")
