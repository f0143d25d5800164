"""HTTP/2 request bodies: each stream whose backend stops reading keeps up to 64 KiB of the
*connection's* 1 MiB receive window unacknowledged, so 16 uploads to a stalled backend leave
the connection window at 0 and every other upload on that connection stalls, to healthy
routes too, until the stalled ones time out (`timeouts.proxy`).  nginx and HAProxy give the
connection window back as soon as DATA is read into a stream's buffer, so only the stalled
streams wait.  h2c listener, 1 worker."""
import socket, time, threading
import h2.config, h2.connection, h2.events
from h import Backend, recv_head, start_proxy


def slow_script(s, rec):          # reads the head, then nothing for 10 s
    recv_head(s, rec)
    time.sleep(10)


def fast_script(s, rec):          # reads a whole Content-Length body, answers 200
    head, rest = recv_head(s, rec)
    length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
    got = len(rest)
    while got < length:
        d = s.recv(65536)
        if not d:
            return
        got += len(d)
    s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


class SmallBuffers(Backend):      # a stalled backend's socket absorbs little (so the test is short)
    def __init__(self, script):
        super().__init__(script)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)


slow, fast = SmallBuffers(slow_script), Backend(fast_script)
p = start_proxy([{"path": "/slow/", "to": f"http://127.0.0.1:{slow.port}/"},
                 {"path": "/fast/", "to": f"http://127.0.0.1:{fast.port}/"}],
                listen=lambda port: [{"address": f"127.0.0.1:{port}", "http2": "h2c"}],
                timeouts={"connect": 2, "proxy": 30, "client_header": 5, "keepalive": 5})


def trial(n_slow):
    s = socket.create_connection(("127.0.0.1", p.port))
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    s.sendall(c.data_to_send())
    pending = {}                  # stream -> bytes still to send
    ended = {}

    def pump(seconds):
        end = time.time() + seconds
        while time.time() < end:
            for sid, left in list(pending.items()):
                n = min(left, c.local_flow_control_window(sid), 16384)
                while n > 0:
                    c.send_data(sid, b"x" * n)
                    left -= n
                    n = min(left, c.local_flow_control_window(sid), 16384)
                pending[sid] = left
                if left == 0:
                    c.end_stream(sid)
                    del pending[sid]
            s.sendall(c.data_to_send())
            s.settimeout(0.05)
            try:
                d = s.recv(65536)
            except socket.timeout:
                continue
            if not d:
                return
            for ev in c.receive_data(d):
                if isinstance(ev, h2.events.ResponseReceived):
                    ended[ev.stream_id] = dict(ev.headers)[b":status"]
            s.sendall(c.data_to_send())

    for i in range(n_slow):
        sid = c.get_next_available_stream_id()
        c.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":authority", "a"),
                             (":path", "/slow/up"), ("content-length", str(8 << 20))])
        pending[sid] = 8 << 20
    pump(2.0)
    conn_window = c.outbound_flow_control_window
    fast_id = c.get_next_available_stream_id()
    c.send_headers(fast_id, [(":method", "POST"), (":scheme", "http"), (":authority", "a"),
                             (":path", "/fast/up"), ("content-length", str(100_000))])
    pending[fast_id] = 100_000
    t0 = time.time()
    while time.time() - t0 < 4.0 and fast_id not in ended:
        pump(0.1)
    took = time.time() - t0
    print(f"{n_slow:2d} uploads to a stalled backend; connection window left to the client: {conn_window}; "
          f"then a 100,000-byte POST /fast/: "
          + (f"status {ended[fast_id].decode()} after {took:.2f} s" if fast_id in ended
             else f"no answer after {took:.1f} s, {100_000 - pending.get(fast_id, 0)} of its bytes sent"))
    s.close()


trial(4)
trial(16)
p.stop()
