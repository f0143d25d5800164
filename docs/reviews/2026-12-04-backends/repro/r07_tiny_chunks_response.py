"""A backend streams a chunked response of 1-byte chunks as fast as it can; the client reads it
all.  A victim request to a healthy route on the same (only) worker measures the loop's stalls.
(The request direction caps the scan per read at 16 KiB since review 2026-12-03-http1 #3; the
response direction reads 256 KiB and scans it in one turn, by design: "a backend is the operator's".)"""
import socket
import threading
import time

import psutil

from h import RawBackend, proxy

stop = threading.Event()
BLOCK = b"1\r\na\r\n" * 40000
BIG = b"4000\r\n" + b"a" * 16384 + b"\r\n"
CONTROL = BIG * 15          # the same 240 KB per send, in 16 KiB chunks


def tiny(conn):
    head = conn.read_head()
    block = CONTROL if head.target.endswith("control") else BLOCK
    conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    try:
        while not stop.is_set():
            conn.sock.sendall(block)
        conn.sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass


def reader(port, path, http10=False):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET %s HTTP/1.%d\r\nHost: t\r\n\r\n" % (path, 0 if http10 else 1))
    while not stop.is_set():
        if not s.recv(1 << 20):
            break
    s.close()


def victim_latencies(port, n=20):
    out = []
    for _ in range(n):
        t = time.time()
        v = socket.create_connection(("127.0.0.1", port), timeout=30)
        v.sendall(b"GET /ok/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        v.recv(100)
        v.close()
        out.append((time.time() - t) * 1000)
        time.sleep(0.1)
    return out


bad, ok = RawBackend(tiny), RawBackend()
p = proxy([{"path": "/ok/", "to": ok.url + "/"}, {"path": "/", "to": bad.url + "/"}])
wpid = p.worker_pids()[0]
idle = victim_latencies(p.port, 10)
print(f"victim idle: median {sorted(idle)[5]:.1f} ms, max {max(idle):.1f} ms")
for label, path, http10 in (("control, 16 KiB chunks, HTTP/1.1 client", b"/control", False),
                            ("1-byte chunks, HTTP/1.1 client (relayed)", b"/tiny", False),
                            ("1-byte chunks, HTTP/1.0 client (de-chunked)", b"/tiny", True)):
    stop.clear()
    t = threading.Thread(target=reader, args=(p.port, path, http10))
    t.start()
    time.sleep(0.5)
    c0 = psutil.Process(wpid).cpu_times()
    lat = victim_latencies(p.port)
    c1 = psutil.Process(wpid).cpu_times()
    stop.set()
    t.join()
    lat.sort()
    print(f"{label}: victim median {lat[10]:.1f} ms, p90 {lat[18]:.1f} ms, max {lat[-1]:.1f} ms; "
          f"worker cpu {c1.user + c1.system - c0.user - c0.system:.1f}s")
    time.sleep(0.5)
p.stop()
bad.close()
ok.close()
