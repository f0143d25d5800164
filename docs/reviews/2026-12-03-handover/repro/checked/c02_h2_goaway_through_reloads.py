"""Checked: six HTTP/2 clients (TLS and h2c), 6 streams in flight each, reconnecting after a
GOAWAY, through 8 reloads: every stream is answered 200, refused (REFUSED_STREAM) or above the
GOAWAY's last stream id (both retryable); none at or under it is lost.  (h2load cannot be used:
it does not reconnect after a GOAWAY; against nginx it loses streams the same way.)"""
import collections
import os
import signal
import ssl
import sys
import threading
import time

import _path  # noqa: F401
import trustme
from h import bench, proxy
from h2client import H2Client
from support import cert_files

tls = (sys.argv[1] if len(sys.argv) > 1 else "tls") == "tls"
with bench() as backend, proxy([{"path": "/", "to": f"http://127.0.0.1:{backend.port}/"}], workers=2,
                               start=False) as p:
    ca = trustme.CA()
    cert, key = cert_files(ca, p.dir, "localhost", "127.0.0.1")
    p.config["listen"] = [{"address": f"127.0.0.1:{p.port}", "tls": {"cert": cert, "key": key}, "http2": True}
                          if tls else {"address": f"127.0.0.1:{p.port}", "http2": "h2c"}]
    p.start()
    stats, running = collections.Counter(), [True]

    def client():
        while running[0]:
            ctx = None
            if tls:
                ctx = ssl.create_default_context()
                ca.configure_trust(ctx)
            c = H2Client(p.port, tls=ctx)
            inflight = []
            while running[0] and c.goaway is None and not c.closed:
                while len(inflight) < 6:
                    inflight.append(c.request("GET", "/small", scheme="https" if tls else "http"))
                c.pump(0.5)
                for sid in [s for s in inflight if c.streams[s].finished]:
                    inflight.remove(sid)
                    st = c.streams[sid]
                    stats["200" if st.status == 200 else f"reset {st.reset}"] += 1
            last = c.goaway.last_stream_id if c.goaway else None
            deadline = time.time() + 10
            while inflight and time.time() < deadline and not c.closed:
                c.pump(0.5)
                for sid in [s for s in inflight if c.streams[s].finished]:
                    inflight.remove(sid)
                    st = c.streams[sid]
                    stats["200" if st.status == 200 else f"reset {st.reset}"] += 1
            for sid in inflight:
                stats["above last id (retry)" if last is not None and sid > last else "LOST at or under last id"] += 1
            c.close()
    threads = [threading.Thread(target=client) for _ in range(6)]
    for t in threads:
        t.start()
    time.sleep(1)
    for _ in range(8):
        os.kill(p.proc.pid, signal.SIGHUP)
        time.sleep(0.8)
    time.sleep(1)
    running[0] = False
    for t in threads:
        t.join(15)
    print("TLS h2" if tls else "h2c", dict(stats), "(reset 7 = REFUSED_STREAM)")
