"""Slow reader memory: each HTTP/2 response stream keeps up to one backend read (256 KiB,
the shared buffer) beyond the client's window, so one connection of 100 streams (the
advertised SETTINGS_MAX_CONCURRENT_STREAMS) holds up to ~25 MiB in the worker, 100x the
HTTP/1.1 per-connection bound in README's Memory table, which does not mention HTTP/2.

Cases (h2c, 1 worker, bodies of 1 GiB, timeouts.proxy 8 s):
 A  default windows (65,535), never a WINDOW_UPDATE, socket not read
 B  large windows (2^31-1), socket never read
 C  large windows, read fast for 1 s (the proxy's backend sockets' receive buffers grow), then
    SETTINGS_INITIAL_WINDOW_SIZE 0 (every stream window shrinks mid-stream); the socket is
    still read.  Each stream now keeps a whole 256 KiB read.
For each: worker RSS growth with 1, 2, 3 connections, backend connections held, and what is
left after timeouts.proxy and after the clients close."""
import socket
import sys
import time

import h2.settings

from h import (Backend, Nginx, arm, bulk, get_headers, h2_machine, h2_socket, nfds, pump_events, raw_drain, rss_kib,
               show, start_proxy)

arm(150)
be = Backend(bulk(1 << 30))
NGINX = "--nginx" in sys.argv     # case C only, against nginx (1 worker, proxy_buffering on, no temp files)
if NGINX:
    p = Nginx([("/", be.port)], "proxy_max_temp_file_size 0; send_timeout 8s; proxy_read_timeout 8s;")
    pid = p.worker_pid()
else:
    p = start_proxy([{"path": "/", "to": f"http://127.0.0.1:{be.port}/"}],
                    timeouts={"connect": 2, "proxy": 8, "client_header": 5, "keepalive": 5})
    pid = p.worker_pids()[0]
time.sleep(0.5)
base = rss_kib(pid)
show("worker at start", f"RSS {base >> 10} MiB, fds {nfds(pid)}")


def open_h2(case: str):
    s = h2_socket(p, rcvbuf=4096 if case != "C" else None)
    settings = None if case == "A" else {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: (1 << 31) - 1}
    c = h2_machine(settings)
    if case != "A":
        c.increment_flow_control_window((1 << 31) - 1 - 65535)
    for i in range(100):
        c.send_headers(c.get_next_available_stream_id(), get_headers(b"/big%d" % i), end_stream=True)
    s.sendall(c.data_to_send())
    if case == "C":
        pump_events(s, c, 1.0, ack=True)
        c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
        s.sendall(c.data_to_send())
        raw_drain(s, 1.0)
    return s


LABELS = {"A": "A default windows, not read", "B": "B large windows, socket never read",
          "C": "C read fast, then INITIAL_WINDOW_SIZE 0"}
for case in ("C" if NGINX else "ABC"):
    socks = []
    for n in range(1, 4):
        socks.append(open_h2(case))
        time.sleep(1.5)
        show(f"{LABELS[case]}: {n} connection(s) x 100 streams",
             f"worker RSS +{(rss_kib(pid) - base) >> 10} MiB, backend connections held {be.open}")
    time.sleep(8.5)
    show("   after timeouts.proxy (8 s) without progress",
         f"worker RSS +{(rss_kib(pid) - base) >> 10} MiB, backend connections held {be.open}")
    for s in socks:
        s.close()
    time.sleep(1.5)
    show("   after the clients closed", f"worker RSS +{(rss_kib(pid) - base) >> 10} MiB, fds {nfds(pid)}, "
         f"backend connections held {be.open}")

if NGINX:
    p.stop()
    sys.exit(0)
# HTTP/1.1 for comparison: 100 connections that send a GET and never read.
socks = []
for i in range(100):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", p.port))
    s.sendall(b"GET /big HTTP/1.1\r\nHost: a.test\r\n\r\n")
    socks.append(s)
time.sleep(2.0)
show("HTTP/1.1: 100 connections, GET, never read",
     f"worker RSS +{(rss_kib(pid) - base) >> 10} MiB (cumulative), backend connections held {be.open}")
for s in socks:
    s.close()
p.stop()
