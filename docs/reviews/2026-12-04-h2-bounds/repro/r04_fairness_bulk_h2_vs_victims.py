"""Fairness (`--nginx`: the same against nginx): what a fast HTTP/2 download does to the worker's other clients.

A: one h2c connection, 95 streams of large downloads, the client reading as fast as it can
   (windows 2^31-1, so it never needs to acknowledge: a raw read-and-discard loop).
B: the same load as 100 HTTP/1.1 connections (raw read-and-discard).
Victims: (1) HTTP/1.1 GETs on fresh connections to the same worker (from a process of their own,
to a backend of its own); in A also (2) small GETs
on the bulk connection itself, each answered by a 2-byte body (time to its END_STREAM, seen by
a frame-header scanner).  Worker CPU and the bulk throughput alongside.  1 worker."""
import os
import selectors
import socket
import struct
import sys
import threading
import time

import h2.settings

from h import (Backend, Nginx, VictimProcess, arm, bulk, cpu_s, get_headers, h2_machine, h2_socket, show,
               small_backend_process, start_proxy)

arm(120)
os.environ["PIN_CPU"] = "1"
os.sched_setaffinity(0, {1})
be = Backend(bulk(1 << 30))
small = small_backend_process()      # the victims' backend, in a process of its own
if "--nginx" in sys.argv:         # the same load against nginx (1 worker, h2c + HTTP/1.1 listeners)
    p = Nginx([("/small", small), ("/", be.port)], "proxy_max_temp_file_size 0;")   # no disk: stream as mpm
    pid, H1PORT, WHO = p.worker_pid(), p.h1port, "nginx"
else:
    p = start_proxy([{"path": "/small", "to": f"http://127.0.0.1:{small}/small"},
                     {"path": "/", "to": f"http://127.0.0.1:{be.port}/"}],
                    timeouts={"connect": 2, "proxy": 60, "client_header": 5, "keepalive": 5})
    pid, H1PORT, WHO = p.worker_pids()[0], p.port, "mpm"
# The worker alone on CPU 0; this script (load and bulk backend) on CPU 1, where the victim
# and its backend run under SCHED_FIFO (aux_procs.py): their latency is the worker's delay.
os.sched_setaffinity(pid, {0})
for tid in os.listdir("/proc/self/task"):
    os.sched_setaffinity(int(tid), {1})
time.sleep(0.5)
SECONDS = 4.0
BULK_STREAMS = 95     # of the 100 a connection may run: room for the small GETs on it


def cpu0_busy():
    """CPU 0's busy and total jiffies (the worker's CPU: softirq work of loopback included)."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu0 "):
                v = [int(x) for x in line.split()[1:]]
                return sum(v) - v[3] - v[4], sum(v)


def measure(label, load):
    stop = threading.Event()
    counter = {"bytes": 0, "inner": []}
    t = threading.Thread(target=load, args=(stop, counter), daemon=True)
    t.start()
    time.sleep(0.5)
    c0, t0, (busy0, total0) = cpu_s(pid), time.monotonic(), cpu0_busy()
    b0 = counter["bytes"]
    victim = VictimProcess(H1PORT, SECONDS)
    time.sleep(SECONDS)
    summary = victim.summary()
    cpu, el = cpu_s(pid) - c0, time.monotonic() - t0
    busy1, total1 = cpu0_busy()
    got = counter["bytes"] - b0
    stop.set()
    t.join()
    show(label, f"bulk {got / el / 1e6:.0f} MB/s, worker CPU {cpu / el * 100:.0f}% of a core, "
               f"its CPU (0) busy {(busy1 - busy0) / max(total1 - total0, 1) * 100:.0f}%")
    show("   victim HTTP/1.1 GETs (fresh connections, own process)", summary)
    inner = sorted(counter["inner"])
    if inner:
        show("   small GETs on the bulk h2 connection", f"{len(inner)} answered, median {inner[len(inner) // 2]:.1f} ms, "
             f"max {inner[-1]:.1f} ms")


def h2_bulk(stop, counter):
    s = h2_socket(p)
    c = h2_machine({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: (1 << 31) - 1})
    c.increment_flow_control_window((1 << 31) - 1 - 65535)
    for i in range(BULK_STREAMS):
        c.send_headers(c.get_next_available_stream_id(), get_headers(b"/big%d" % i), end_stream=True)
    s.sendall(c.data_to_send())
    # From here on the client's h2 machine is used only to encode small requests; what comes
    # back is scanned by frame headers (DATA with END_STREAM on a small request's stream).
    buf = bytearray()
    pending = {}
    next_small = time.monotonic() + 0.6
    s.settimeout(0.05)
    while not stop.is_set():
        now = time.monotonic()
        if now >= next_small:
            sid = c.get_next_available_stream_id()
            c.send_headers(sid, get_headers(b"/small"), end_stream=True)
            s.sendall(c.data_to_send())
            pending[sid] = now
            next_small = now + 0.1
        try:
            d = s.recv(1 << 20)
        except (socket.timeout, TimeoutError):
            continue
        if not d:
            break
        counter["bytes"] += len(d)
        buf += d
        pos = 0
        while len(buf) - pos >= 9:
            high, low, kind, flags, sid = struct.unpack_from(">BHBBI", buf, pos)
            length = high << 16 | low
            if len(buf) - pos < 9 + length:
                break
            if flags & 1 and sid in pending and kind in (0, 1):
                counter["inner"].append((time.monotonic() - pending.pop(sid)) * 1000)
            pos += 9 + length
        del buf[:pos]
    s.close()


def h1_bulk(stop, counter):
    sel = selectors.DefaultSelector()
    socks = []
    for i in range(100):
        s = socket.create_connection(("127.0.0.1", H1PORT))
        s.sendall(b"GET /big%d HTTP/1.1\r\nHost: a.test\r\n\r\n" % i)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        socks.append(s)
    while not stop.is_set():
        for key, _ in sel.select(0.05):
            try:
                d = key.fileobj.recv(1 << 20)
            except BlockingIOError:
                continue
            counter["bytes"] += len(d)
    for s in socks:
        s.close()


show(f"{WHO} baseline: victim alone", VictimProcess(H1PORT, 2.0).summary())
measure(f"A: one h2c connection, {BULK_STREAMS} streams downloading", h2_bulk)
time.sleep(1)
measure("B: 100 HTTP/1.1 connections downloading", h1_bulk)
p.stop()
