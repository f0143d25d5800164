"""#2: a reload to fewer workers resets the connections queued on a retired slot's socket.

12 threads open a new connection per request (Connection: close) while the master is
reloaded 16 times, mpm.workers alternating 1 and 2; then (control) 10 reloads keeping 2."""
import collections
import os
import signal
import socket
import sys
import threading
import time

from h import bench, proxy, read_head, status_of


def run(reloads: int, alternate: bool) -> None:
    with bench() as backend, proxy([{"path": "/", "to": f"http://127.0.0.1:{backend.port}/"}], workers=2) as p:
        errors, ok, running = collections.Counter(), [0], [True]

        def client():
            while running[0]:
                try:
                    s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
                    s.sendall(b"GET /small HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                    head, _ = read_head(s)
                    s.close()
                    ok[0] += status_of(head) == 200
                except OSError as exc:
                    errors[type(exc).__name__] += 1
        threads = [threading.Thread(target=client) for _ in range(12)]
        for t in threads:
            t.start()
        try:
            for i in range(reloads):
                if alternate:
                    p.config["mpm"]["workers"] = 1 if i % 2 == 0 else 2
                    p.write_config()
                os.kill(p.proc.pid, signal.SIGHUP)
                time.sleep(1.0)
        finally:
            running[0] = False
            for t in threads:
                t.join()
        print(f"{reloads} reloads, workers {'2<->1' if alternate else 'kept at 2'}: {ok[0]} answered, "
              f"errors {dict(errors)}")


run(int(sys.argv[1]) if len(sys.argv) > 1 else 16, True)
run(10, False)
