"""A full disk (here /dev/full: every write fails with ENOSPC) loses access-log lines and
nothing says so: no count, no error-log line, no "[N log lines dropped]" once it writes again.

log.access is /dev/full; 20 requests; then we read what the error log and stderr say."""
import os
import time

from h import FastBackend, request, start_proxy

b = FastBackend()
p = start_proxy([{"path": "/", "to": b.url + "/"}], start=False)
p.config["log"]["access"] = "/dev/full"
p.start()
codes = [request(p.port, f"/lost/{i}")[0] for i in range(20)]
time.sleep(1.5)          # ACCESS_FLUSH: the queued lines are written (and fail) by now
print("answers:", {c: codes.count(c) for c in set(codes)})
said = [line for line in (p.error_text() + p.stderr_text()).splitlines()
        if "space" in line.lower() or "dropped" in line or "access" in line.lower()]
print("error log and stderr about the lost lines:", said or "nothing")
p.stop()
