"""CPU cost of HeadReader.feed for a request-line token that arrives one byte per read
(the deferred path of 0aa7cd9), against a method that has its space (the old path)."""
import sys, time; sys.path.insert(0, ".")
from conf.model import Limits
from worker.headreader import HeadReader
from worker.headchecks import HttpError
L = Limits()
def run(first, fill):
    r = HeadReader(True, L); buf = bytearray(first); n = 0
    t = time.process_time()
    try:
        while True:
            r.feed(buf); buf += fill; n += 1
    except HttpError as e:
        res = f"{e.status} {e.message}"
    return n, time.process_time() - t, res
print("request_line limit:", L.request_line)
for label, first, fill in [("token, no space (deferred)", b"A", b"A"),
                           ("'GET /' then target bytes (fed to llhttp)", b"GET /", b"a")]:
    n, cpu, res = run(first, fill)
    print(f"{label}: {n} reads, {cpu*1000:.1f} ms CPU, ended with {res}")
