"""#3: a request pipelined behind one that ends while the new generation still starts gets 408.

The new generation's workers are held 4 s at start (a sitecustomize.py on PYTHONPATH, forked
children only, once a trigger file exists; the product is unchanged), keepalive is 2 s."""
import os
import socket
import tempfile

from h import Proxy, http_response_body, raw, read_head, respond, status_of, wait_for

SITE = '''
import os, time
def _slow():
    if os.path.exists(os.environ["SLOW_START"]):
        time.sleep(4)
os.register_at_fork(after_in_child=_slow)
'''


def app(conn):
    while (head := conn.read_head()) is not None:
        conn.backend.event(f"got {head.target}").set()
        if head.get("x-wait"):
            conn.backend.event(head.get("x-wait")).wait(20)
        conn.send(respond(200, head.target.encode()))


with tempfile.TemporaryDirectory() as d, raw(app) as backend:
    os.mkdir(f"{d}/site")
    open(f"{d}/site/sitecustomize.py", "w").write(SITE)
    p = Proxy(f"{d}/p", [{"path": "/", "to": backend.url + "/"}], workers=1, timeouts={"keepalive": 2},
              environ={"PYTHONPATH": f"{d}/site", "SLOW_START": f"{d}/slow"})
    try:
        p.start()
        [old] = p.worker_pids()
        s = socket.create_connection(("127.0.0.1", p.port), timeout=15)
        s.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\nX-Wait: slow\r\n\r\nGET /next HTTP/1.1\r\nHost: t\r\n\r\n")
        backend.event("got /slow").wait(5)
        open(f"{d}/slow", "w").close()
        print("reload:", p.reload().stdout.strip())
        wait_for(lambda: any(w["pid"] == old and w["state"] == "stopping" for w in p.status()["workers"]), 5, 0.05)
        backend.event("slow").set()
        buf = bytearray()
        for _ in range(2):
            head, buf = read_head(s, buf)
            print(status_of(head), http_response_body(s, head, buf)[:60])
        s.close()
    finally:
        p.stop()
