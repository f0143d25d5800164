"""Finding 9 (h2 part): an HTTP/2 stream refused by the head checks (414, 431) is logged with
the request line "-", though :method and :path are known (H2Stream.request_line), and with %X "-"
while the connection goes on."""
# HTTP/2 request refused by the HTTP/1.1 head checks: its access-log line has no request line
import os, sys, time, socket
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _h import *
import h2.connection, h2.config, h2.events
be = RawBackend()
p = Proxy(tempfile.mkdtemp(prefix="rev-logs-"), [{"path": "/", "to": be.url}], workers=1)
p.config["listen"] = [{"address": f"127.0.0.1:{p.port}", "http2": "h2c"}]
atexit.register(p.stop); p.start()
s = p.connect(timeout=3)
c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
c.initiate_connection(); s.sendall(c.data_to_send())
def get(sid, path, extra=()):
    c.send_headers(sid, [(":method", "GET"), (":path", path), (":scheme", "http"), (":authority", "x"), *extra], end_stream=True)
    s.sendall(c.data_to_send())
    while True:
        d = s.recv(65536)
        for ev in c.receive_data(d):
            if isinstance(ev, h2.events.ResponseReceived): status = dict(ev.headers)[b":status"]
            if isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                s.sendall(c.data_to_send()); return status
print(get(1, "/" + "a" * 9000))
print(get(3, "/ok", [("x-big", "b" * 9000)]))
print(get(5, "/ok"))
time.sleep(1.5)
for l in p.access_lines(): print(" ", l[:200])
print(p.error_text()[-400:])
