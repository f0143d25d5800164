import os
# HTTP/2 (h2c prior knowledge): lines for normal, HEAD, 204, RST mid-download, TCP close mid-download
import sys, time, socket
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from _h import *
import h2.connection, h2.config, h2.events

def handler(conn):
    while True:
        head = conn.read_head()
        if head is None: return
        conn.read_body(head)
        if head.target == "/big":
            conn.send(respond(200, b"x"*(4*1024*1024)))
        elif head.target == "/204":
            conn.send(b"HTTP/1.1 204 No Content\r\n\r\n")
        else:
            conn.send(respond(200, b"y"*100))
be = RawBackend(handler)
p = Proxy(tempfile.mkdtemp(prefix="rev-logs-"), [{"path": "/", "to": be.url}], workers=1)
p.config["listen"] = [{"address": f"127.0.0.1:{p.port}", "http2": "h2c"}]
atexit.register(p.stop); p.start()

def h2conn():
    s = p.connect(timeout=3)
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection(); s.sendall(c.data_to_send())
    return s, c
def req(c, s, sid, method, path):
    c.send_headers(sid, [(":method", method), (":path", path), (":scheme", "http"), (":authority", "x"), ("user-agent", "h2test")], end_stream=True)
    s.sendall(c.data_to_send())
def pump(s, c, until, limit=3.0):
    got = {}; end = time.monotonic()+limit
    while time.monotonic() < end:
        try: d = s.recv(65536)
        except socket.timeout: break
        if not d: break
        for ev in c.receive_data(d):
            if isinstance(ev, h2.events.DataReceived):
                got[ev.stream_id] = got.get(ev.stream_id, 0) + len(ev.data)
                c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            if isinstance(ev, h2.events.StreamEnded) and until(ev): return got
        s.sendall(c.data_to_send())
    return got
s, c = h2conn()
req(c, s, 1, "GET", "/ok"); print("ok", pump(s, c, lambda e: e.stream_id == 1))
req(c, s, 3, "HEAD", "/ok"); print("head", pump(s, c, lambda e: e.stream_id == 3))
req(c, s, 5, "GET", "/204"); print("204", pump(s, c, lambda e: e.stream_id == 5))
# RST mid download: read ~200 KB then reset
req(c, s, 7, "GET", "/big")
got = 0
while got < 200000:
    d = s.recv(65536)
    for ev in c.receive_data(d):
        if isinstance(ev, h2.events.DataReceived):
            got += len(ev.data); c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
    s.sendall(c.data_to_send())
c.reset_stream(7); s.sendall(c.data_to_send())
print("rst after", got)
time.sleep(0.5)
req(c, s, 9, "GET", "/big")
got = 0
while got < 300000:
    d = s.recv(65536)
    for ev in c.receive_data(d):
        if isinstance(ev, h2.events.DataReceived):
            got += len(ev.data); c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
    s.sendall(c.data_to_send())
s.close(); print("closed after", got)
time.sleep(2)
for l in p.access_lines(): print(" ", l)
