import sys, time, gc
sys.path.insert(0, "/work/main")
from conf import load_config
from conf.model import Limits
from worker.backend import Origins
from worker.http1 import parse_request
from worker.regexlimit import RegexTimeout
from worker.routing import Router
open("/tmp/r.yaml","w").write('listen: ["127.0.0.1:8000"]\nroutes:\n'
  '  - {match: "^/u/([a-z]+)$", to: "http://127.0.0.1:9001/users/$1"}\n'
  '  - {path: "/", to: "http://127.0.0.1:9001/"}\n')
router = Router(load_config("/tmp/r.yaml").routes, 300.0, Origins())
head = parse_request(b"GET /u/ann HTTP/1.1\r\nHost: h\r\n\r\n", Limits())
N = int(sys.argv[1])
heap = [[i, str(i)] for i in range(N)]   # a worker's live objects (connections, buffers, ...)
gc.collect()
t=time.process_time(); gc.collect(); print("full gc cpu ms", (time.process_time()-t)*1000)
fails=0; garbage=[]
for i in range(200000):
    garbage.append([i])      # per-request allocations that survive a while (connection state)
    if len(garbage) > 20000: garbage = []
    try: router.resolve(head.target, head)
    except RegexTimeout: fails += 1
print("N", N, "spurious RegexTimeouts:", fails)
