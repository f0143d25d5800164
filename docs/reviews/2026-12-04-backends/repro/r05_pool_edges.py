"""Pooled backend connections and misbehaving backends.
(a) stray bytes sent 50 ms after a complete response, while the connection is idle in the pool:
    the next client (300 ms later) must not get them.
(b) the backend reads the request on a pooled connection and closes without answering:
    POST must get 502 (not retried: it may have acted), GET is retried once on a fresh connection.
(c) the backend closes an idle pooled connection while the worker is stopped (SIGSTOP), and a
    POST arrives before the worker runs again: does the POST go on the dead connection?"""
import os
import signal
import socket
import time

from h import RawBackend, proxy, recv_all



def handler(conn, m=None):
    n = 0
    while True:
        head = conn.read_head()
        if head is None:
            return
        conn.read_body(head)
        n += 1
        if m == "a":
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            time.sleep(0.05)
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nSTRAY!")
        elif m == "b":
            if n == 1:
                conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            else:
                conn.sock.close()
                return
        elif m == "c":
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            if n == 1:
                time.sleep(0.3)     # the worker is stopped meanwhile
                conn.sock.close()
                return


def get(p, data):
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    s.sendall(data)
    out, how = recv_all(s, 2)
    s.close()
    return out


backends = {}


def per_part(part):
    def run(conn):
        handler(conn, part)
    return run


for part in "abc":
    backends[part] = RawBackend(per_part(part))
p = proxy([{"path": f"/{k}/", "to": b.url + "/"} for k, b in backends.items()])
wpid = p.worker_pids()[0]


def GETp(part):
    return b"GET /%s/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % part


def POSTp(part):
    return b"POST /%s/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc" % part

backend = backends["a"]
for i in range(3):
    first = get(p, GETp(b"a"))
    time.sleep(0.3)
    second = get(p, GETp(b"a"))
    time.sleep(0.3)
    print("(a)", first[-2:], "then", second[:15], second[-6:], "conns so far", len(backend.conns))

backend = backends["b"]
for method, req in (("POST", POSTp(b"b")), ("GET", GETp(b"b"))):
    before = len(backend.conns)
    get(p, GETp(b"b"))                # leaves a pooled connection
    out = get(p, req)
    print(f"(b) {method} on a pooled connection the backend closes after reading it: {out[:22]!r}, "
          f"backend connections used {len(backend.conns) - before}, requests seen "
          f"{sum(1 for r in backend.requests[-3:] if r.method == method)}")

backend = backends["c"]
for i in range(3):
    before = len(backend.conns)
    get(p, GETp(b"c"))                # pooled; the backend closes it 0.3 s later
    os.kill(wpid, signal.SIGSTOP)
    time.sleep(0.5)                   # the backend's FIN is in the worker's socket now
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    s.sendall(POSTp(b"c"))
    time.sleep(0.1)
    os.kill(wpid, signal.SIGCONT)
    out, how = recv_all(s, 2)
    s.close()
    print(f"(c) POST after the idle close: {out[:22]!r} backend connections {len(backend.conns) - before}")
print("\n".join(x[-140:] for x in p.error_text().splitlines() if "error" in x or "warn" in x))
p.stop()
for b in backends.values():
    b.close()
