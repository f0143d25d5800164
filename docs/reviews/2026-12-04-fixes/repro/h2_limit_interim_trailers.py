"""(python-h2 as a client enforces 65536, hpack's default, whatever it announces: so the
limit here is 65536 and the blocks are ~2000 small fields, ~80 KB as HTTP/2 counts them.)
The SETTINGS_MAX_HEADER_LIST_SIZE check covers the final head only: an oversized 103 or
oversized trailers still reach a strict client, which fails the whole connection (every
other stream on it with it).  cd /tmp/rev-fixes/tests && /work/main/.venv/bin/python THIS"""
import sys, os, tempfile, time
sys.path.insert(0, os.getcwd())
import h2.settings
from h2client import H2Client
from proxyproc import Proxy
from rawbackend import RawBackend

BIG = "</a.css>; rel=preload, " * 200          # ~4.6 KB

def handler(conn):
    while (head := conn.read_head()) is not None:
        if head.target == "/interim":
            conn.send(b"HTTP/1.1 103 Early Hints\r\n" + b"Link: </a>\r\n" * 2000 + b"\r\n"
                      b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        elif head.target == "/trailers":
            conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n"
                      + b"X-T: t\r\n" * 2000 + b"\r\n")
        else:
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 8192\r\n\r\n")
            for _ in range(8):
                time.sleep(0.1)
                conn.send(b"s" * 1024)

backend = RawBackend(handler)
d = tempfile.mkdtemp(prefix="rev-fixes-")
proxy = Proxy(d, [{"path": "/", "to": backend.url + "/"}], workers=1)
proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"}]
try:
    proxy.start()
    for path in ("/interim", "/trailers"):
        c = H2Client(proxy.port, settings={h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 65536})
        c.pump(0.3)   # let the SETTINGS exchange finish
        slow = c.request("GET", "/slow")
        other = c.request("GET", path)
        try:
            c.wait(lambda: c.streams[slow].finished and c.streams[other].finished, 8, "both")
            st = c.streams[other]
            print(path, "both finished:", st.status, "interims", len(st.interim), "trailers", len(st.trailers or ()), "slow", len(c.streams[slow].body))
        except BaseException as e:
            print(path, "FAILED:", type(e).__name__, str(e)[:200],
                  "| slow stream got", len(c.streams[slow].body), "bytes; goaway", c.goaway)
        try: c.close()
        except Exception: pass
    time.sleep(0.3)
    print(proxy.error_text()[-800:])
finally:
    proxy.stop(); backend.close()
