"""#5: a worker told to stop while a multi-record hand-over item is arriving exits with it.

A 100 KB head still arriving moves in several records; in the second generation a
sitecustomize.py calls the worker's graceful_stop right after such an item's first record
(as two reloads close together would).  The product is unchanged."""
import os
import socket
import tempfile

from h import Proxy, http_response_body, proxy_read_all, raw, read_head, status_of, wait_for

SITE = '''
import os
def _arm():
    if not os.path.exists(os.environ["STOP_MID_ITEM"]):
        return
    from worker.handover import _Inbound
    record = _Inbound._record
    def stop_mid_item(self, message, fds):
        record(self, message, fds)
        if message[:1] == b"C" and self.pending is not None and not self.worker.stopping:
            self.worker.graceful_stop()
    _Inbound._record = stop_mid_item
os.register_at_fork(after_in_child=_arm)
'''

with tempfile.TemporaryDirectory() as d, raw() as backend:
    os.mkdir(f"{d}/site")
    open(f"{d}/site/sitecustomize.py", "w").write(SITE)
    p = Proxy(f"{d}/p", [{"path": "/", "to": backend.url + "/"}], workers=1, timeouts={"client_header": 30},
              environ={"PYTHONPATH": f"{d}/site", "STOP_MID_ITEM": f"{d}/trigger"})
    try:
        p.start()
        [old] = p.worker_pids()
        head = b"GET /big HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-H%d: %s\r\n" % (n, b"v" * 4000) for n in range(25))
        s = socket.create_connection(("127.0.0.1", p.port), timeout=15)
        s.sendall(head[:-100])
        wait_for(lambda: proxy_read_all(s, p.port), 5, 0.01)
        open(f"{d}/trigger", "w").close()
        print("reload:", p.reload().stdout.strip())
        wait_for(lambda: old not in p.worker_pids(current_only=False), 15, 0.05)
        s.sendall(head[-100:] + b"\r\n")
        try:
            answer, buf = read_head(s)
            print("answer:", status_of(answer), http_response_body(s, answer, buf))
        except OSError as exc:
            print("answer:", repr(exc))
        s.close()
    finally:
        p.stop()
