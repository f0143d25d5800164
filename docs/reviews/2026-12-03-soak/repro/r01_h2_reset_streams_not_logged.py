"""HTTP/2 streams the client resets (or abandons by closing) in the read that brought their
HEADERS are never logged: N requests in, fewer access-log lines out."""
import time

import h
from h2client import H2Client

port = h.backend()
p = h.proxy([{"path": "/app/", "to": f"http://127.0.0.1:{port}/"}])
N = 20
for i in range(N):                       # HEADERS and RST_STREAM in one write
    c = H2Client(p.port)
    sid = c.request("GET", f"/app/big?reset{i}", scheme="http", end=True)
    c.conn.reset_stream(sid)
    c.flush()
    c.get("/app/small?after", scheme="http")
    c.close()
for i in range(N):                       # HEADERS then the connection closed at once
    c = H2Client(p.port)
    c.request("GET", f"/app/big?closed{i}", scheme="http")
    c.close()
time.sleep(0.5)
print("reset in the same read: sent", N, "logged", h.wait_lines(p, "?reset", N))
print("closed at once:         sent", N, "logged", h.wait_lines(p, "?closed", N))
print("control (after):        sent", N, "logged", h.wait_lines(p, "?after", N))
