"""RFC 8441 WebSockets whose client does not read: each tunnel stream keeps one backend read
(up to 256 KiB, worker/h2/tunnel.py `_read`: recv_into the whole shared buffer) beyond its
window, the same bound as a response stream (r01), so 100 WebSocket streams on one
connection hold ~25 MiB.  The other direction (client -> a backend that does not read) is
bounded by the stream window (64 KiB), as documented.

Backend: answers the Upgrade with a correct 101, then writes binary WebSocket frames of 64 KiB
as fast as they are taken.  Client: h2c, 100 extended CONNECTs (:protocol websocket), large
windows; reads fast for 1 s, then SETTINGS_INITIAL_WINDOW_SIZE 0 and keeps reading its
socket.  Then the route's idle timeout (timeouts.proxy, 8 s) ends the tunnels.  1 worker."""
import base64
import hashlib
import time

import h2.settings

from h import (Backend, arm, get_headers, h2_machine, h2_socket, nfds, pump_events, raw_drain, rss_kib, show,
               start_proxy)

arm(120)
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
FRAME = b"\x82\x7f" + (65536).to_bytes(8, "big") + b"w" * 65536


def ws_flood(sock, head, buf):
    key = [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
           if line.lower().startswith(b"sec-websocket-key:")][0]
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    while True:
        sock.sendall(FRAME)


be = Backend(ws_flood)
p = start_proxy([{"path": "/ws", "to": f"ws://127.0.0.1:{be.port}/ws"}],
                timeouts={"connect": 2, "proxy": 8, "client_header": 5, "keepalive": 5})
pid = p.worker_pids()[0]
time.sleep(0.5)
base = rss_kib(pid)
show("worker at start", f"RSS {base >> 10} MiB, fds {nfds(pid)}")

socks = []
for n in range(1, 3):
    s = h2_socket(p)
    c = h2_machine({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: (1 << 31) - 1})
    c.increment_flow_control_window((1 << 31) - 1 - 65535)
    for i in range(100):
        c.send_headers(c.get_next_available_stream_id(),
                       [(b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"http"),
                        (b":authority", b"a.test"), (b":path", b"/ws/%d" % i), (b"sec-websocket-version", b"13")],
                       end_stream=False)
    s.sendall(c.data_to_send())
    events = pump_events(s, c, 1.0, ack=True)
    ok = sum(1 for ev in events if isinstance(ev, h2.events.ResponseReceived)
             and dict(ev.headers).get(b":status") == b"200")
    c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    s.sendall(c.data_to_send())
    raw_drain(s, 1.5)
    socks.append(s)
    show(f"{n} connection(s): {ok} tunnels opened (200) on the last; read fast 1 s, then window 0",
         f"worker RSS +{(rss_kib(pid) - base) >> 10} MiB, backend connections held {be.open}")
time.sleep(9)
show("after the idle timeout (8 s)", f"worker RSS +{(rss_kib(pid) - base) >> 10} MiB, backend connections held "
     f"{be.open}, fds {nfds(pid)}")
for s in socks:
    s.close()
time.sleep(1)
show("after the clients closed", f"worker RSS +{(rss_kib(pid) - base) >> 10} MiB, fds {nfds(pid)}")
p.stop()
