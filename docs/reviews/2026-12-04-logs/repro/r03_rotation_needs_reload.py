"""Finding 3: logs are reopened only by a reload (there is no reopen-only signal or verb).
(a) With the configuration file broken at rotation time (an edit in progress), logrotate's
postrotate reload is refused and every line goes on into the renamed file, access.log is never
recreated; (b) every successful rotation replaces the workers and ends every HTTP/2 connection
(GOAWAY), as any reload does.  nginx reopens on USR1 without reading its configuration."""
import sys, time, socket, os
from _h import *  # noqa
import h2.connection, h2.config, h2.events
be = RawBackend()
p = Proxy(tempfile.mkdtemp(prefix="rev-logs-"), [{"path": "/", "to": be.url}], workers=1)
p.config["listen"] = [{"address": f"127.0.0.1:{p.port}", "http2": "h2c"}]
atexit.register(p.stop); p.start()
def get(path):
    return send(p, b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode())
# (b) an h2c connection, one request, then logrotate's mv + reload
s = p.connect(timeout=3)
c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
c.initiate_connection(); s.sendall(c.data_to_send())
def h2get(sid):
    c.send_headers(sid, [(":method", "GET"), (":path", f"/h2/{sid}"), (":scheme", "http"), (":authority", "x")], end_stream=True)
    s.sendall(c.data_to_send())
    evs=[]
    while True:
        d = s.recv(65536)
        if not d: evs.append("EOF"); return evs
        for ev in c.receive_data(d):
            evs.append(type(ev).__name__ + (f"(error={ev.error_code})" if isinstance(ev, h2.events.ConnectionTerminated) else ""))
            if isinstance(ev, (h2.events.StreamEnded, h2.events.ConnectionTerminated)):
                s.sendall(c.data_to_send()); return evs
print("h2 before:", h2get(1))
pids = p.worker_pids()
os.rename(p.access_log, p.access_log + ".1")
print("reload rc", p.reload().returncode)
time.sleep(1)
s.settimeout(2)
try:
    d = s.recv(65536); evs = [type(e).__name__ for e in c.receive_data(d)] if d else ["EOF"]
except socket.timeout: evs = ["nothing"]
print("h2 connection after the rotation's reload:", evs, "; workers", pids, "->", p.worker_pids())
s.close()
# (a) the config is broken at rotation time (an edit in progress): rotation silently does not happen
get("/before")
os.rename(p.access_log, p.access_log + ".2")
with open(p.config_path, "a") as f: f.write("oops: [\n")
r = p.reload(); print("reload with broken config rc", r.returncode, r.stdout.strip()[:150], r.stderr.strip()[:150])
get("/after-rotation")
time.sleep(1.5)
print("access.log exists:", os.path.exists(p.access_log))
print("access.log.2 tail:", open(p.access_log + ".2").read().splitlines()[-1][:100])
p.write_config()   # repair, so the harness can stop it
