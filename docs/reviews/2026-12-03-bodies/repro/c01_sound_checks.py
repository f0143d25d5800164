"""Checks that held (the report's "found sound"): cuts, aborts, memory with slow readers,
a small request's latency beside a 100 MiB copy-path download."""
import socket
import threading
import time

import psutil
from h import RawBackend, access, proxy, recv_all

BIG = 100 << 20
CHUNK = b"z" * (1 << 20)


def handler(conn):
    while True:
        head = conn.read_head()
        if head is None:
            return
        t = head.target
        try:
            if t.startswith("/big"):
                conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BIG)
                for _ in range(BIG // len(CHUNK)):
                    conn.send(CHUNK)
            elif t.startswith("/cut"):
                conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"c" * 50000)
                time.sleep(0.1)
                conn.reset()
                return
            elif t.startswith("/close"):       # read-until-close, cut by a RST
                conn.send(b"HTTP/1.1 200 OK\r\n\r\n" + b"d" * 50000)
                time.sleep(0.1)
                conn.reset()
                return
            else:
                conn.read_body(head)
                conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except OSError:
            return


for splice in ("1", "0"):
    backend = RawBackend(handler)
    p = proxy([{"path": "/", "to": backend.url + "/"}], environ={"MPM_SPLICE": splice})
    [pid] = p.worker_pids()
    w = psutil.Process(pid)
    rss0 = w.memory_info().rss
    # 1. a cut CL body: truncated, then EOF; the next request goes on a fresh backend connection
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    s.sendall(b"GET /cut HTTP/1.1\r\nHost: t\r\n\r\n")
    data, how = recv_all(s)
    body = data.partition(b"\r\n\r\n")[2]
    print(f"splice={splice} cut: {len(body)}/100000 then {how}")
    s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    s.sendall(b"GET /close HTTP/1.1\r\nHost: t\r\n\r\n")
    data, how = recv_all(s)
    ended = data.endswith(b"0\r\n\r\n")
    print(f"  close-delimited cut: chunked={b'chunked' in data} last chunk={ended} {how}")
    # 2. 20 slow readers of 100 MiB each, and a small request's latency meanwhile
    slow = []
    for _ in range(20):
        c = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        slow.append(c)
    fast = socket.create_connection(("127.0.0.1", p.port), timeout=30)
    fast.sendall(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
    got = [0]

    def drain():
        while got[0] < BIG:
            d = fast.recv(1 << 20)
            if not d:
                break
            got[0] += len(d)
    t = threading.Thread(target=drain)
    t.start()
    worst = 0.0
    for _ in range(20):
        t0 = time.monotonic()
        q = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        q.sendall(b"GET /small HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        recv_all(q)
        q.close()
        worst = max(worst, time.monotonic() - t0)
        time.sleep(0.05)
    t.join(60)
    rss1 = w.memory_info().rss
    print(f"  fast download {got[0] >> 20} MiB; small request worst {worst * 1000:.1f} ms; "
          f"worker RSS +{(rss1 - rss0) >> 10} KiB with 20 slow readers")
    # 3. the slow readers abort: the backend sees EOF on each connection, the log marks X
    for c in slow:
        c.close()
    time.sleep(1)
    lines = access(p, "/big")
    print("  aborted lines:", sum(1 for x in lines if " X " in x or x.rstrip().endswith("X") or '"X"' in x),
          "of", len(lines), "; backend conns still open:",
          sum(1 for c in backend.conns if not c.eof.is_set() and not c.sock._closed))
    p.stop()
    backend.close()
