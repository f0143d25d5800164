"""Cost of 6,000 `match:` routes: conf load, the worker's Router build, and one request walking
them (a 404, or the last route).  cd /tmp/rev-fixes && /work/main/.venv/bin/python THIS"""
import sys, time, re
sys.path.insert(0, ".")
from conf.routes import _compile_both
from worker.regexlimit import bounded_search
pats = [b"^/svc%d/(v[12])/(.*)$" % i for i in range(6000)]
t = time.process_time(); ps = [re.compile(p) for p in pats]; a = time.process_time() - t
re.purge()
t = time.process_time(); ps = [_compile_both(p, 0) for p in pats]; b = time.process_time() - t
t = time.process_time(); ss = [bounded_search(p) for p in ps]; c = time.process_time() - t
print(f"re.compile x6000 {a:.2f}s; conf _compile_both {b:.2f}s; worker bounded_search (per worker) {c:.2f}s")
for subj in (b"/svc5999/v1/x", b"/nothing"):
    t = time.process_time()
    for s in ss:
        if s(subj): break
    d = time.process_time() - t
    t = time.process_time()
    for p in ps:
        if p.search(subj): break
    e = time.process_time() - t
    print(f"{subj!r}: regex+timeout {d*1000:.1f} ms, re {e*1000:.1f} ms ({d/len(ss)*1e6:.1f} us/search)")
