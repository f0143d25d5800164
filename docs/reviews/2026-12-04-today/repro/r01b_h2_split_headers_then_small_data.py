"""Variant of r01 with no early answer at all: one ordinary upload, within its window.
`ClientFrames.charge` knows a stream as "fresh" only when its HEADERS frame header is in the
same read; h2 creates the stream (RequestReceived -> self.streams) only once the header block
is complete.  When the HEADERS frame is cut by the read boundary (a 2 KiB head over two TCP
segments, or CONTINUATION), the next read's DATA frames for that stream are charged as "DATA
frames on closed streams": here 600 x 100-byte DATA frames (60,000 bytes, inside the 65,535
window) right behind the rest of the header block end the connection with ENHANCE_YOUR_CALM.
Run with MPM_ROOT=/tmp/review-base for the old behaviour."""
import os
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _h import RawBackend, proxy  # noqa: E402
from h2client import H2Client  # noqa: E402


def handler(conn):
    while (head := conn.read_head()) is not None:
        body = conn.read_body(head)
        conn.send(f"HTTP/1.1 200 OK\r\nContent-Length: {len(str(len(body)))}\r\n\r\n{len(body)}".encode())


be = RawBackend(handler)
p = proxy([{"path": "/", "to": be.url + "/"}], h2c=True)
c = H2Client(p.port)
c.pump(0.3)                                       # settings exchanged
sid = c.conn.get_next_available_stream_id()
from h2client import Stream  # noqa: E402
c.streams[sid] = Stream(sid)
c.conn.send_headers(sid, [(":method", "POST"), (":scheme", "https"), (":authority", "proxy.test"),
                          (":path", "/upload"), ("content-type", "application/x-ndjson"),
                          ("cookie", "session=" + "s" * 1500)])
headers = c.conn.data_to_send()
cut = len(headers) // 2
c.sock.sendall(headers[:cut])                     # the first TCP segment
time.sleep(0.2)
frames = b"".join(struct.pack(">HBBBI", 0, 100, 0, 0, sid) + b"y" * 100 for _ in range(599))
frames += struct.pack(">HBBBI", 0, 100, 0, 1, sid) + b"y" * 100       # the last one ends the stream
c.sock.sendall(headers[cut:] + frames)            # the rest of the head, then the body
try:
    c.wait(lambda: c.streams[sid].finished or c.goaway, 5, "the answer")
except AssertionError as exc:
    print("wait:", exc)
print("GOAWAY:", c.goaway and c.goaway.error_code)
print("answer:", c.streams[sid].status, bytes(c.streams[sid].body))
time.sleep(0.2)
print("error log:", [line for line in open(p.error_log).read().splitlines() if "too many" in line][-2:])
c.close()
p.stop()
be.closing = True
be.sock.close()
bad = c.goaway is not None or c.streams[sid].status != 200
print("REPRODUCED: an in-window upload ended the connection" if bad else "not reproduced")
sys.exit(1 if bad else 0)
