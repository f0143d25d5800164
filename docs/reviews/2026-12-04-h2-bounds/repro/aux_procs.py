"""Helpers run as separate processes, so the GIL of the load-generating script does not
delay them: `small` is a backend answering every request with 200 "ok"; `victim PORT SECONDS
GAP` sends HTTP/1.1 GETs /small on fresh connections and prints their latencies (ms) as JSON."""
import json
import socket
import sys
import threading
import time


def small_backend():
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(128)
    print(ls.getsockname()[1], flush=True)

    def serve(s):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = s.recv(65536)
                    if not d:
                        return
                    buf += d
                buf = buf[buf.index(b"\r\n\r\n") + 4:]
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except OSError:
            return
        finally:
            s.close()
    while True:
        s, _ = ls.accept()
        threading.Thread(target=serve, args=(s,), daemon=True).start()


def victim(port: int, seconds: float, gap: float):
    lat, failed = [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"GET /small HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                data += d
            s.close()
            if data.startswith(b"HTTP/1.1 200"):
                lat.append((time.monotonic() - t0) * 1000)
            else:
                failed += 1
        except OSError:
            failed += 1
        time.sleep(gap)
    print(json.dumps({"lat": lat, "failed": failed}), flush=True)


if __name__ == "__main__":
    # On a busy 2-core machine the load generator would delay these processes themselves:
    # with PIN_CPU set they run on that CPU under SCHED_FIFO (root), so what they measure is
    # the proxy worker's delay (the worker is pinned to the other CPU by the repro).
    import os
    if os.environ.get("PIN_CPU"):
        os.sched_setaffinity(0, {int(os.environ["PIN_CPU"])})
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        except OSError:
            pass
    if sys.argv[1] == "small":
        small_backend()
    else:
        victim(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]))
