"""Finding 4: the "[N log lines dropped: ...]" marker.  (a) In a JSON access log it is a line
that is not JSON; (b) it is written after the lines that came once writing worked again, not
where the gap is.  The worker's file size is limited with prlimit (RLIMIT_FSIZE: EFBIG, as a
full disk gives ENOSPC), then the file is emptied (logrotate's copytruncate) and the limit lifted."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _h import RawBackend, proxy  # noqa: E402

be = RawBackend()
p = proxy([{"path": "/", "to": be.url}], workers=1, log={"format": "json"})
pid = p.worker_pids()[0]
subprocess.run(["prlimit", f"--pid={pid}", "--fsize=3000:unlimited"], check=True)
s = p.connect()


def req(path: bytes) -> None:
    s.sendall(b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n" % path)
    buf = b""
    while not buf.endswith(b"/" + path):
        buf += s.recv(65536)


for i in range(40):
    req(b"lost%d" % i)
time.sleep(1.5)
open(p.access_log, "r+b").truncate(0)             # copytruncate
subprocess.run(["prlimit", f"--pid={pid}", "--fsize=unlimited"], check=True)
for i in range(3):
    req(b"after%d" % i)
time.sleep(1.5)
s.close()
lines = open(p.access_log, encoding="utf-8").read().splitlines()
bad = 0
for line in lines:
    try:
        record = json.loads(line)
        print("json  ", record["request"])
    except ValueError:
        bad += 1
        print("NOT JSON", line)
print(f"{bad} of {len(lines)} lines are not JSON; the marker is line {len(lines) - bad + 1 if bad else '-'} of {len(lines)}")
sys.exit(1 if bad else 0)
