"""Uploads faster than the backend takes them: 100 streams on one h2c connection, each a POST
of 64 MiB (content-length) sent as fast as the proxy's windows allow, to a backend that reads
the head and then nothing (receive buffer 4 KiB).  What the worker holds: README says a
connection buffers at most http2_streams x 64 KiB of request bodies (the stream windows);
the backend socket's leftover (Endpoint.out) comes on top.  Also: a /fast route on the same
connection still gets its 100,000-byte POST through (the connection window is not held),
and the request body's stall ends at timeouts.proxy (8 s): 408 or 504 for each stream."""
import socket
import threading
import time

from h import Backend, arm, h2_machine, h2_socket, nfds, rss_kib, show, start_proxy

arm(120)
BODY = 64 << 20


def stall(sock, head, buf):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    time.sleep(60)
    return False


def fast(sock, head, buf):
    n = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(buf) < n:
        d = sock.recv(65536)
        if not d:
            return False
        buf += d
    del buf[:n]
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


slow_be = Backend(stall, rcvbuf=4096)
fast_be = Backend(fast)
p = start_proxy([{"path": "/fast", "to": f"http://127.0.0.1:{fast_be.port}/fast"},
                 {"path": "/", "to": f"http://127.0.0.1:{slow_be.port}/"}],
                timeouts={"connect": 2, "proxy": 8, "client_header": 5, "keepalive": 5})
pid = p.worker_pids()[0]
time.sleep(0.5)
base = rss_kib(pid)

s = h2_socket(p)
c = h2_machine()
lock = threading.Lock()
sids = []
for i in range(99):
    sid = c.get_next_available_stream_id()
    sids.append(sid)
    c.send_headers(sid, [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"a.test"),
                         (b":path", b"/up%d" % i), (b"content-length", b"%d" % BODY)])
s.sendall(c.data_to_send())
sent = {sid: 0 for sid in sids}
statuses = {}
events_seen = []


def pump(seconds):
    deadline = time.monotonic() + seconds
    s.settimeout(0.05)
    while time.monotonic() < deadline:
        with lock:
            for sid in sids:
                if sid in statuses:
                    continue
                try:
                    room = min(c.local_flow_control_window(sid), BODY - sent[sid])
                except Exception:     # noqa: BLE001  (closed)
                    continue
                if room > 0:
                    chunk = min(room, 16384)
                    c.send_data(sid, b"u" * chunk)
                    sent[sid] += chunk
            out = c.data_to_send()
        if out:
            s.sendall(out)
        try:
            d = s.recv(65536)
        except (socket.timeout, TimeoutError):
            continue
        if not d:
            return
        with lock:
            for ev in c.receive_data(d):
                events_seen.append(ev)
                if isinstance(ev, h2.events.ResponseReceived):
                    statuses[ev.stream_id] = dict(ev.headers)[b":status"]
                elif isinstance(ev, h2.events.StreamReset):
                    statuses.setdefault(ev.stream_id, b"RST %d" % ev.error_code)
            out = c.data_to_send()
        if out:
            s.sendall(out)


import h2.events  # noqa: E402

pump(3.0)
show("99 uploads to the stalled backend for 3 s",
     f"{sum(sent.values()) >> 10} KiB sent by the client ({sum(sent.values()) // 99 >> 10} KiB a stream), "
     f"worker RSS +{(rss_kib(pid) - base) >> 10} MiB, connection window left (client's view) "
     f"{c.outbound_flow_control_window}; (the kernel's send buffers toward the backend took the rest: "
     f"{sum(sent.values()) >> 20} MiB, not in RSS)")
fsid = c.get_next_available_stream_id()
with lock:
    c.send_headers(fsid, [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"a.test"),
                          (b":path", b"/fast"), (b"content-length", b"100000")])
    for _ in range(3):
        c.send_data(fsid, b"f" * 16384)
    s.sendall(c.data_to_send())
t0 = time.monotonic()
pump(0.3)
with lock:
    for _ in range(3):
        c.send_data(fsid, b"f" * 16384)
    c.send_data(fsid, b"f" * (100000 - 6 * 16384), end_stream=True)
    s.sendall(c.data_to_send())
while fsid not in statuses and time.monotonic() - t0 < 4:
    pump(0.1)
show("a /fast POST of 100,000 bytes on the same connection", f"{statuses.get(fsid)} in {time.monotonic() - t0:.2f} s")
pump(7.0)
answers = [statuses.get(sid) for sid in sids]
show("after timeouts.proxy", f"answers to the stalled uploads: "
     f"{ {a: answers.count(a) for a in set(answers)} }; worker fds {nfds(pid)}")
s.close()
p.stop()
