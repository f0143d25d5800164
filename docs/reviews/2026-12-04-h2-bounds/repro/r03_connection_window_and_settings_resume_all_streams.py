"""Every connection-level window opening (WINDOW_UPDATE on stream 0) and every SETTINGS
frame that changes INITIAL_WINDOW_SIZE resumes every blocked stream of the connection
(`resume_blocked`, worker/h2/frames.py `_window_updated` / `_settings`): 100 calls of
`H2Stream.resume` -> `send_data` -> `conn.block`, each re-slicing its kept read.  A client
whose streams all wait turns one small frame into 100 stream resumptions:

C: stream windows open, the connection window 0; 1-byte WINDOW_UPDATEs on stream 0, one a
   write every 0.5 ms (several in one read would open the window once: one DATA frame).  Each frame frees 1 byte (one 1-byte DATA frame, which credits the
   WINDOW_UPDATE budget 2 tokens: the budget never runs out).
D: stream windows 0; SETTINGS frames raising INITIAL_WINDOW_SIZE by 1 each: every frame lets
   each of the 100 streams send 1 byte (100 DATA frames, 100 copies of the kept read).
   SETTINGS spend the control budget (500 at once, 100/s): (D1) a burst of 400 in one
   write; (D2) 90 a second for 4 s.
Victim: HTTP/1.1 GETs on fresh connections to the same worker, from a process of its own.
`--nginx`: the same against nginx (1 worker).  h2c, 1 worker."""
import os
import socket
import struct
import sys
import threading
import time

import h2.settings

from h import (Backend, Nginx, VictimProcess, arm, bulk, cpu_s, get_headers, h2_machine, h2_socket, pump_events, raw_drain, rss_kib,
               show, small_backend_process, start_proxy)

arm(150)
be_big = Backend(bulk(1 << 30))
small = small_backend_process()      # the victims' backend, in a process of its own
if "--nginx" in sys.argv:         # the same against nginx (1 worker; h2c and HTTP/1.1 listeners)
    p = Nginx([("/small", small), ("/", be_big.port)], "proxy_max_temp_file_size 0;")
    pid, H1PORT, WHO = p.worker_pid(), p.h1port, "nginx"
else:
    p = start_proxy([{"path": "/small", "to": f"http://127.0.0.1:{small}/small"},
                     {"path": "/", "to": f"http://127.0.0.1:{be_big.port}/"}],
                    timeouts={"connect": 2, "proxy": 60, "client_header": 5, "keepalive": 5})
    pid, H1PORT, WHO = p.worker_pids()[0], p.port, "mpm"
time.sleep(0.5)


def frame(kind: int, sid: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, 0]) + struct.pack(">I", sid) + payload


def window_update(sid: int, inc: int) -> bytes:
    return frame(8, sid, struct.pack(">I", inc))


def settings_initial_window(value: int) -> bytes:
    return frame(4, 0, struct.pack(">HI", 4, value))


def setup(block_connection: bool):
    """100 streams, each holding a read; either the connection window (C) or every stream
    window (D) left at exactly 0."""
    s = h2_socket(p)
    c = h2_machine({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: (1 << 31) - 1})
    # C: a 16 MiB connection window (acknowledged per 8 MiB while reading fast), so it runs
    # out quickly once the client stops acknowledging; D: a large one.
    c.increment_flow_control_window(((16 << 20) if block_connection else (1 << 31) - 1) - 65535)
    sids = []
    for i in range(100):
        sid = c.get_next_available_stream_id()
        sids.append(sid)
        c.send_headers(sid, get_headers(b"/big%d" % i), end_stream=True)
    s.sendall(c.data_to_send())
    pump_events(s, c, 1.0, ack=True)
    if block_connection:
        pump_events(s, c, 1.5, ack=False)       # the connection window runs out; streams' stay large
        # Open it by more than any deficit: the streams have data, so they use all of it and
        # the connection window ends at exactly 0 in the proxy's view.
        deficit = -c._inbound_flow_control_window_manager.current_window_size
        s.sendall(window_update(0, max(deficit, 0) + 65536))
        raw_drain(s, 1.0)
    else:
        c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
        s.sendall(c.data_to_send())
        pump_events(s, c, 1.5, ack=False)
        top = b""
        for sid in sids:
            deficit = -c._get_stream_by_id(sid)._inbound_window_manager.current_window_size
            if deficit > 0:
                top += window_update(sid, deficit)
        conn_deficit = (1 << 30) - c._inbound_flow_control_window_manager.current_window_size
        if conn_deficit > 0:
            top += window_update(0, conn_deficit)
        s.sendall(top)
    time.sleep(0.3)
    return s


def drain(s, counter, stop):
    s.settimeout(0.2)
    while not stop.is_set():
        try:
            d = s.recv(1 << 20)
        except (socket.timeout, TimeoutError):
            continue
        except OSError:
            counter["closed"] = True
            return
        if not d:
            counter["closed"] = True
            return
        counter["bytes"] += len(d)


def run(label, s, batches, pace, seconds):
    counter = {"bytes": 0, "closed": False}
    stop = threading.Event()
    t = threading.Thread(target=drain, args=(s, counter, stop), daemon=True)
    t.start()
    victim = VictimProcess(H1PORT, seconds)
    c0, t0, frames, sent = cpu_s(pid), time.monotonic(), 0, 0
    for batch, n in batches:
        if time.monotonic() - t0 > seconds or counter["closed"]:
            break
        try:
            s.sendall(batch)
        except OSError:
            break
        frames += n
        sent += len(batch)
        time.sleep(pace)
    time.sleep(max(0.0, seconds - (time.monotonic() - t0)) + 0.3)
    cpu = cpu_s(pid) - c0
    el = time.monotonic() - t0
    stop.set()
    t.join()
    show(label, f"{frames} frames, {sent} bytes sent; worker CPU {cpu:.2f} s in {el:.1f} s "
                f"({cpu / el * 100:.0f}% of a core), {cpu / max(frames, 1) * 1e6:.0f} us a frame; "
                f"the client received {counter['bytes'] >> 10} KiB; closed by proxy: {counter['closed']}")
    show("   victim HTTP/1.1 GETs meanwhile", victim.summary())
    s.close()


show(f"{WHO}: baseline victim, idle worker", VictimProcess(H1PORT, 2.0).summary())

s = setup(block_connection=True)
run("C: 1-byte WINDOW_UPDATE on stream 0 (one every 0.5 ms)",
    s, ((window_update(0, 1), 1) for _ in range(100000)), 0.0005, 4.0)
time.sleep(1)

s = setup(block_connection=False)
run("D1: 400 SETTINGS (INITIAL_WINDOW_SIZE 1..400) in one write",
    s, [(b"".join(settings_initial_window(v) for v in range(1, 401)), 400)], 0.0, 4.0)
time.sleep(1)

s = setup(block_connection=False)
run("D2: 90 SETTINGS a second (INITIAL_WINDOW_SIZE +1 each)",
    s, ((settings_initial_window(v), 1) for v in range(1, 100000)), 1 / 90, 4.0)
time.sleep(1)

# D3: three such connections (one client; limits.per_client.connections is 200 by default).
socks = [setup(block_connection=False) for _ in range(3)]


def settings_all(v):
    for other in socks[1:]:
        other.sendall(settings_initial_window(v))
    return settings_initial_window(v)


for other in socks[1:]:
    threading.Thread(target=raw_drain, args=(other, 6.0), daemon=True).start()
run("D3: 3 connections x 90 SETTINGS a second", socks[0], ((settings_all(v), 3) for v in range(1, 100000)),
    1 / 90, 4.0)
for other in socks[1:]:
    other.close()
p.stop()
