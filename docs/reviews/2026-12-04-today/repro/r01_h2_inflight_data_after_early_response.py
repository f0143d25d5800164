"""A legitimate HTTP/2 upload that the backend answers early (401/413 before the body: the
proxy then sends RST_STREAM NO_ERROR, RFC 9113 §8.1) gets its whole connection killed with
GOAWAY ENHANCE_YOUR_CALM when the client had small DATA frames in flight -- all of them
within the 64 KiB stream window the proxy itself granted.  Every other stream on that
connection dies with it (here a download in progress).

The client streams 100-byte DATA frames (a line-by-line / message-by-message streaming
upload: NDJSON, gRPC client streaming, log shipping).  Its frames "in flight" are simulated
by sending them right after the early answer arrived, as a client on a link with some RTT does.
Since ffadad1 each such frame spends the control budget (CONTROL_BURST 500); before, they did
not.  Run with MPM_ROOT=/tmp/review-base (a406ab1) for the old behaviour."""
import os
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _h import RawBackend, proxy, respond  # noqa: E402
from h2client import H2Client  # noqa: E402


def handler(conn):
    head = conn.read_head()
    if head is None:
        return
    if head.target.startswith("/slow"):
        time.sleep(1.5)
        conn.send(respond(200, b"slow download done"))
    else:                                        # early answer, body not read
        conn.send(respond(401, b"no", [("Connection", "close")]))
    time.sleep(0.5)


be = RawBackend(handler)
p = proxy([{"path": "/", "to": be.url + "/"}], h2c=True)
c = H2Client(p.port)
slow = c.request("GET", "/slow")                 # another stream on the connection
up = c.request("POST", "/upload", end=False)
c.conn.send_data(up, b"x" * 100)
c.flush()
c.wait(lambda: c.streams[up].finished, 5, "the early answer")
print("upload stream:", c.streams[up].status, "reset code", c.streams[up].reset)
# the 600 x 100 B frames the client had in flight (60,000 bytes < the 65,535 window)
frame = struct.pack(">HBBBI", 0, 100, 0, 0, up) + b"y" * 100
c.sock.sendall(frame * 600)
try:
    c.wait(lambda: c.streams[slow].finished or c.goaway, 5, "the slow stream")
except AssertionError as exc:
    print("wait:", exc)
print("GOAWAY:", c.goaway and (c.goaway.error_code, c.goaway.additional_data))
print("slow stream:", c.streams[slow].status, bytes(c.streams[slow].body))
time.sleep(0.3)
print("error log:", [line for line in open(p.error_log).read().splitlines() if "budget" in line or "calm" in line.lower()
                     or "DATA" in line][-3:])
c.close()
p.stop()
be.closing = True
be.sock.close()
bad = c.goaway is not None or c.streams[slow].status != 200
print("REPRODUCED: the connection was killed" if bad else "not reproduced")
sys.exit(1 if bad else 0)
