"""Checked, found sound: HTTP/2 responses to clients whose windows are 0 (SETTINGS_INITIAL_WINDOW_SIZE
0, never a WINDOW_UPDATE), 100 streams each, 4 MiB bodies: what a stream keeps "beyond its
window" could have been a 256 KiB read each (~25 MiB a connection).  Measured: ~1-2 MiB of
worker RSS per connection.  h2c listener, 1 worker."""
import socket, time, psutil
import h2.config, h2.connection, h2.settings
import os, sys
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from h import Backend, recv_head, start_proxy

BODY = 4 << 20


def big_script(s, rec):
    buf = bytearray()
    while True:
        try:
            head, buf = recv_head(s, rec, buf)
        except (ConnectionError, OSError):
            return
        try:
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BODY + b"r" * BODY)
        except OSError:
            return


be = Backend(big_script)
p = start_proxy([{"path": "/", "to": f"http://127.0.0.1:{be.port}/"}],
                listen=lambda port: [{"address": f"127.0.0.1:{port}", "http2": "h2c"}])
proc = psutil.Process(p.worker_pids()[0])
rss0 = proc.memory_info().rss
conns = []
for n in range(4):
    s = socket.create_connection(("127.0.0.1", p.port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.local_settings = h2.settings.Settings(client=True, initial_values={
        h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    c.initiate_connection()
    for i in range(100):
        c.send_headers(c.get_next_available_stream_id(),
                       [(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", f"/f{i}")],
                       end_stream=True)
    out = c.data_to_send()
    s.sendall(out)
    conns.append(s)
    time.sleep(2.0)
    print(f"after {n + 1} connection(s) (client sent {len(out)} bytes on this one): worker RSS "
          f"+{(proc.memory_info().rss - rss0) >> 20} MiB; backend connections {len(be.conns)}")
for s in conns:
    s.close()
time.sleep(1.0)
print(f"after the clients closed: worker RSS +{(proc.memory_info().rss - rss0) >> 20} MiB")
p.stop()
