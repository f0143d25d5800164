"""A backend answers 413 before the upload is complete and closes without reading the rest
(Python's http.server, gunicorn, many app servers: the unread body makes their close a RST).
The client should get the 413 (HAProxy relays such an early answer; so does Apache's
mod_proxy_http since 2.4.x reads the response when the body send fails)."""
import socket
import sys
import threading
import time

from h import RawBackend, proxy, recv_all


def early_413(conn):
    head = conn.read_head()
    if head is None:
        return
    time.sleep(WAIT)      # 0: answers at once; 1: after the proxy filled its receive buffer
    conn.send(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large")
    conn.reset()          # what a close with unread data in the receive buffer is: a RST


WAIT = 0


def run(size, splice):
    backend = RawBackend(early_413)
    p = proxy([{"path": "/", "to": backend.url + "/"}], limits={"request_body": 0},
              environ={"MPM_SPLICE": "1" if splice else "0"})
    results = []
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        s.sendall(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size)
        stop = threading.Event()

        def pump():
            chunk = b"x" * 65536
            try:
                while not stop.is_set():
                    s.send(chunk)
            except OSError:
                pass
        t = threading.Thread(target=pump, daemon=True)
        t.start()
        data, how = recv_all(s, 5)
        stop.set()
        s.close()
        results.append((data.split(b"\r\n", 1)[0].decode(), how))
    p.stop()
    backend.close()
    return results


for WAIT in (0, 1):
  for splice in (True, False):
    res = run(100 << 20, splice)
    print(f"wait={WAIT} splice={splice}: " + "; ".join(f"{a!r} {b}" for a, b in res))
sys.exit(0)
