"""A backend whose response head holds 8,000 small fields (64,041 bytes, under mpm's 64 KiB head
limit), beside a long download on the same HTTP/2 connection.  mpm sends the whole field list
(decoded: ~290 KB) to the client whatever SETTINGS_MAX_HEADER_LIST_SIZE it announced; clients
that enforce their limit fail the connection, and the other stream with it.
Run with nghttp (nghttp2) and with python-hyper h2 announcing 65536."""
import subprocess
import sys
import time

from h import RawBackend, proxy

sys.path.insert(0, "/tmp/rev-backends/tests")
from h2client import H2Client  # noqa: E402

import h2.settings  # noqa: E402

MANY = b"HTTP/1.1 200 OK\r\n" + b"X-F: v\r\n" * 8000 + b"Content-Length: 3\r\n\r\nabc"


def handler(conn):
    while True:
        head = conn.read_head()
        if head is None:
            return
        if head.target.endswith("/slow"):
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 20480\r\n\r\n")
            for _ in range(20):
                time.sleep(0.1)
                conn.send(b"s" * 1024)
        else:
            conn.send(MANY)


backend = RawBackend(handler)
p = proxy([{"path": "/", "to": backend.url + "/"}], h2c=True)
base = f"http://127.0.0.1:{p.port}"
r = subprocess.run(["nghttp", "-n", "-s", base + "/slow", base + "/many"], capture_output=True, text=True, timeout=20)
print("nghttp rc", r.returncode, "\n", (r.stdout + r.stderr)[-900:])
r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_header}\\n", "--http2-prior-knowledge",
                    base + "/many"], capture_output=True, text=True, timeout=20)
print("curl:", r.returncode, r.stdout, r.stderr[-300:])

c = H2Client(p.port, settings={h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 65536})
slow = c.request("GET", "/slow")
many = c.request("GET", "/many")
try:
    c.wait(lambda: c.streams[slow].finished and c.streams[many].finished, 10, "both")
    print("h2 (announced 65536): both ended; many status", c.streams[many].status)
except Exception as e:  # noqa: BLE001
    print("h2 (announced 65536): connection failed:", type(e).__name__, str(e)[:120],
          "| slow stream got", len(c.streams[slow].body), "of 20480 bytes")
c.close()
p.stop()
backend.close()
