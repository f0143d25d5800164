"""head_of reads kind->type, calls tp_alloc, then reads kind->offsets.  tp_alloc is itself an
allocation of a GC object, and in CPython 3.11 that can run a collection, with finalizers
(__del__), before it returns.  A finalizer that calls set_head_types there changes the
offsets under head_of: the instance of the old class is filled at the new class's offsets.
Same-size class with the slots in another order: the slots come out permuted (wrong answer);
a larger class: writes past the end of the instance (heap overflow).  Each try runs in a child,
with the gen-0 threshold swept so that the collection falls inside head_of's tp_alloc."""
import os, subprocess, sys
CHECKOUT = os.environ.get("CHECKOUT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))
code = r'''
import gc, sys
from worker import headscan, http1, _heads
N, big = int(sys.argv[1]), sys.argv[2] == "big"
pad = tuple(f"pad{i}" for i in range(400)) if big else ()
class Other:                                  # the same slot names, at other offsets
    __slots__ = pad + tuple(reversed(headscan.REQUEST_SLOTS))
class Cycle:
    def __del__(self):
        _heads.set_head_types(Other, headscan.REQUEST_SLOTS, http1.ResponseHead, headscan.RESPONSE_SLOTS,
                              tuple(sorted(http1.HOP_BY_HOP)))
raw = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"
gc.collect()
gc.set_threshold(N)
c = Cycle(); c.me = c; del c
head = _heads.request(raw, 8190, 100, 8190)
gc.set_threshold(700)
print(type(head).__name__, {n: getattr(head, n, "<unset>") for n in ("raw", "line_end", "method", "target", "host")})
for _ in range(3):
    gc.collect(); [bytes(100) for _ in range(10000)]
print("survived")
'''
for variant in ("same-size", "big"):
    for n in range(1, 12):
        d = subprocess.run([sys.executable, "-c", code, str(n), variant], cwd=CHECKOUT, capture_output=True, text=True)
        out = d.stdout.strip().splitlines()
        wrong = d.returncode != 0 or (out and not out[0].startswith("Other") and "b'GET'" not in out[0].split("'method': ")[1][:7])
        if wrong:
            print(f"{variant}: threshold {n}: exit status {d.returncode}")
            print("  stdout:", " | ".join(out))
            if d.stderr.strip():
                print("  stderr:", d.stderr.strip().splitlines()[-1])
            break
    else:
        print(f"{variant}: not reproduced for thresholds 1..11")
