"""A log reader that stops reading (a log shipper paused, a `| logger` pipe stalled) makes
every request cost a copy of everything queued for the log.

log.access is a FIFO; a reader process drains it (phase 1), then is stopped with SIGSTOP
(phase 2: the pipe fills, lines queue up to MAX_PENDING = 4 MiB, then are dropped).  One
keep-alive client sends requests back to back; we print its requests/s and the worker's CPU
per request for each second."""
import os
import signal
import socket
import subprocess
import sys
import time

import psutil
from h import FastBackend, start_proxy

b = FastBackend()
p = start_proxy([{"path": "/", "to": b.url + "/"}], start=False)
fifo = os.path.join(p.dir, "access.fifo")
os.mkfifo(fifo)
p.config["log"]["access"] = fifo
reader = subprocess.Popen(["sh", "-c", f"exec cat {fifo} > /dev/null"])
try:
    p.start()
    worker = psutil.Process(p.worker_pids()[0])
    s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
    req = b"GET /some/page?with=a-query HTTP/1.1\r\nHost: t\r\nUser-Agent: repro/1.0\r\n\r\n"

    def second():
        n, cpu0, end = 0, sum(worker.cpu_times()[:2]), time.monotonic() + 1
        worst = 0.0
        while time.monotonic() < end:
            t = time.monotonic()
            s.sendall(req)
            data = b""
            while not data.endswith(b"hello"):
                data += s.recv(65536)
            worst = max(worst, time.monotonic() - t)
            n += 1
        cpu = sum(worker.cpu_times()[:2]) - cpu0
        return n, cpu / n * 1e6, worst * 1000

    for i in range(3):
        print("reader reading:  %5d req/s, worker CPU %6.0f us/request, worst %5.1f ms" % second(), flush=True)
    reader.send_signal(signal.SIGSTOP)
    for i in range(8):
        print("reader stopped:  %5d req/s, worker CPU %6.0f us/request, worst %5.1f ms" % second(), flush=True)
    s.close()
finally:
    reader.send_signal(signal.SIGKILL)
    reader.wait()
    p.stop()
