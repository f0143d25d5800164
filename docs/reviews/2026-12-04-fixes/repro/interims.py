"""100-continue uploads and interim counts to HTTP/1.1, HTTP/1.0 and HTTP/2 clients; %b.
cd /tmp/rev-fixes/tests && /work/main/.venv/bin/python THIS"""
import sys, os, tempfile, time, socket
sys.path.insert(0, os.getcwd())
from h2client import H2Client
from proxyproc import Proxy
from rawbackend import RawBackend

def handler(conn):
    while (head := conn.read_head()) is not None:
        n = int(head.target.split("/")[-1] or 0)
        conn.send(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" * (n - 1) + b"HTTP/1.1 100 Continue\r\n\r\n")
        body = conn.read_body(head)
        conn.send(b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

backend = RawBackend(handler)
d = tempfile.mkdtemp(prefix="rev-fixes-")
proxy = Proxy(d, [{"path": "/", "to": backend.url + "/"}], workers=1, log={"format": "combined"})
proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"}]
try:
    proxy.start()
    for version in (b"1.1", b"1.0"):
        for n in (1, 10, 11):
            s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
            s.sendall(b"PUT /u/%d HTTP/%s\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n" % (n, version))
            got = bytearray()
            try:
                if version == b"1.1":
                    while b"100 Continue\r\n\r\n" not in got and b"HTTP/1.1 5" not in got:
                        chunk = s.recv(65536)
                        if not chunk: break
                        got += chunk
                s.sendall(b"hello")
                while (chunk := s.recv(65536)): got += chunk
            except OSError as e:
                got += b" <%s>" % str(e).encode()
            statuses = [l.split(b" ")[1].decode() for l in got.split(b"\r\n") if l.startswith(b"HTTP/1.")]
            print(version.decode(), n, "interims from backend:", n, "client saw:", statuses, "ends:", bytes(got[-12:]))
            s.close()
    c = H2Client(proxy.port)
    for n in (1, 10, 11):
        sid = c.request("PUT", f"/u/{n}", headers=[("expect", "100-continue"), ("content-length", "5")], end=False)
        c.wait(lambda: c.streams[sid].interim or c.streams[sid].finished, 5, "interim")
        if not c.streams[sid].finished:
            c.send_data(sid, b"hello", end=True)
        c.wait(lambda: c.streams[sid].finished, 5, "final")
        st = c.streams[sid]
        print("h2", n, "interims relayed", len(st.interim), "status", st.status, "body", st.body)
    c.close()
    time.sleep(0.4)
    for line in proxy.access_lines(): print(line[line.index('"PUT'):][:60])
finally:
    proxy.stop(); backend.close()
