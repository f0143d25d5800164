"""Checked (found sound): clients that go away mid-download release everything.
 a) 100 streams mid-download, then RST_STREAM CANCEL on each (within the reset budget)
 b) 100 streams mid-download, then the client vanishes with a TCP RST (SO_LINGER 0)
 c) as b) over TLS (ALPN h2)
 d) 100 streams mid-download, then the client stops reading and its socket is closed with
    unread data (the kernel sends RST) while the proxy's output toward it is paused
Worker fds, backend connections still open (backend side), worker RSS, before and after.
1 worker."""
import socket
import struct
import time

import h2.settings

from h import (Backend, arm, bulk, get_headers, h2_machine, h2_socket, nfds, pump_events, rss_kib, show,
               start_proxy)

arm(120)
be = Backend(bulk(1 << 30))
p = start_proxy([{"path": "/", "to": f"http://127.0.0.1:{be.port}/"}], tls=True,
                timeouts={"connect": 2, "proxy": 30, "client_header": 5, "keepalive": 5})
pid = p.worker_pids()[0]
time.sleep(0.5)
fd0, rss0 = nfds(pid), rss_kib(pid)
show("worker at start", f"fds {fd0}, RSS {rss0 >> 10} MiB")


def start(tls=False, read=0.5):
    s = h2_socket(p, tls=tls)
    c = h2_machine({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
    c.increment_flow_control_window((1 << 30) - 65535)
    sids = []
    for i in range(100):
        sid = c.get_next_available_stream_id()
        sids.append(sid)
        c.send_headers(sid, get_headers(b"/big%d" % i), end_stream=True)
    s.sendall(c.data_to_send())
    pump_events(s, c, read, ack=True)
    return s, c, sids


def report(label):
    time.sleep(1.5)
    show(label, f"worker fds {nfds(pid)} (start {fd0}), backend connections open {be.open}, "
                f"RSS +{(rss_kib(pid) - rss0) >> 10} MiB")


s, c, sids = start()
show("a) 100 streams downloading", f"worker fds {nfds(pid)}, backend connections open {be.open}")
for sid in sids:
    c.reset_stream(sid, 8)
s.sendall(c.data_to_send())
report("a) after RST_STREAM CANCEL on all 100")
s.close()

for label, tls in (("b) h2c", False), ("c) TLS", True)):
    s, c, sids = start(tls=tls)
    raw = s if not tls else s   # SSLSocket: setsockopt goes to the TCP socket
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close() if not tls else socket.socket.close(s)
    report(f"{label}: after the client vanished with a TCP RST")

s, c, sids = start(read=0.5)
time.sleep(1.0)          # not read: the proxy's output to it fills and pauses
show("d) client not reading for 1 s", f"worker fds {nfds(pid)}, backend connections open {be.open}")
s.close()                 # unread data: the kernel resets the connection
report("d) after close with unread data")
p.stop()
