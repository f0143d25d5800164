"""Checked (found #4 on the way): 16 keep-alive clients send numbered GETs and POSTs, 1-3
pipelined at once, each batch in 4 random pieces a few ms apart, through 20 reloads 0.5 s
apart with mpm.workers going 1, 2, 3, ... (or `upgrade`: 3 `mpmctl upgrade`s).  Every answer
must be the right one, each request must reach the backend once and be logged once."""
import collections
import hashlib
import os
import random
import re
import signal
import socket
import sys
import threading
import time

import _path  # noqa: F401
from h import proxy, raw, read_head, status_of


def numbered(conn):
    while (head := conn.read_head()) is not None:
        body = conn.read_body(head)
        number = head.target.rsplit("/", 1)[1]
        answer = number + (" " + hashlib.sha256(body).hexdigest() if head.method == "POST" else "")
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer.encode()))


mode = sys.argv[1] if len(sys.argv) > 1 else "reload"
with raw(numbered) as backend, proxy([{"path": "/", "to": backend.url + "/"}], workers=2,
                                     timeouts={"keepalive": 30, "client_header": 30}) as p:
    errors, answered, running = [], [0], [True]

    def client(n):
        rnd = random.Random(n)
        s = socket.create_connection(("127.0.0.1", p.port), timeout=15)
        i, buf = 0, bytearray()
        while running[0]:
            batch = []
            for _ in range(rnd.choice((1, 1, 2, 3))):
                i += 1
                ident = f"{n}.{i}"
                body = (f"b{ident}" * rnd.randint(0, 50)).encode()
                batch.append((ident, body, f"{'POST' if body else 'GET'} /n/{ident} HTTP/1.1\r\nHost: t\r\n"
                              f"Content-Length: {len(body)}\r\n\r\n".encode() + body))
            data = b"".join(r for _, _, r in batch)
            try:
                prev = 0
                for cut in sorted(rnd.sample(range(1, len(data)), 3)) + [len(data)]:
                    s.sendall(data[prev:cut])
                    prev = cut
                    time.sleep(rnd.random() * 0.003)
                for ident, body, _ in batch:
                    head, buf = read_head(s, buf)
                    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
                    while len(buf) < length:
                        more = s.recv(65536)
                        if not more:
                            raise ConnectionError("closed mid-body")
                        buf += more
                    got = bytes(buf[:length])
                    del buf[:length]
                    expected = ident + (" " + hashlib.sha256(body).hexdigest() if body else "")
                    if status_of(head) != 200 or got.decode() != expected:
                        errors.append(f"{ident}: {head[:30]!r} {got[:40]!r}")
                    answered[0] += 1
            except OSError as exc:
                errors.append(f"{n}.{i}: {exc!r}")
                s.close()
                s = socket.create_connection(("127.0.0.1", p.port), timeout=15)
                buf = bytearray()
        s.close()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    try:
        if mode == "upgrade":
            for _ in range(3):
                time.sleep(0.5)
                print(p.mpmctl("upgrade", timeout=60).stdout.strip())
        else:
            for i in range(20):
                time.sleep(0.5)
                p.config["mpm"]["workers"] = 1 + i % 3
                p.write_config()
                os.kill(p.proc.pid, signal.SIGHUP)
        time.sleep(2)
    finally:
        running[0] = False
        for t in threads:
            t.join(20)
    time.sleep(1.5)
    seen = collections.Counter(h.target.rsplit("/", 1)[1] for h in backend.requests)
    logged = collections.Counter(m.group(1) for line in p.access_lines()
                                 if (m := re.search(r'"(?:GET|POST) /n/(\S+) ', line)))
    print(f"{mode}: answered {answered[0]}, at the backend {sum(seen.values())} "
          f"(twice: {[k for k, v in seen.items() if v > 1][:5]}), logged {sum(logged.values())} "
          f"(twice: {[k for k, v in logged.items() if v > 1][:5]}; answered but not logged: "
          f"{len(set(seen) - set(logged))}), errors {len(errors)} {errors[:5]}")
