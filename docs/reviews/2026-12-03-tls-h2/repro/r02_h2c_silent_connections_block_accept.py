"""On an `http2: h2c` listener, connections that send nothing (PrefaceSniffer) cannot be closed
for room while younger than client_header - handshake seconds (default 20 - 10 = 10 s):
`admission._oldest_unserved` takes every member of `worker.handshakes` to have started at
`deadline - timeouts.handshake`, but a sniffer's deadline is accept + client_header.  So
`threads_per_child` silent connections keep every new client in the backlog, where on a plain
listener each new client closes the oldest silent one and is served at once.
1 worker, threads_per_child 20, the default timeouts (client_header 20, handshake 10)."""
import socket, time
from h import Backend, ok_script, read_all, start_proxy

be = Backend(ok_script)
CAP = 20


def trial(h2c):
    p = start_proxy([{"path": "/", "to": f"http://127.0.0.1:{be.port}/"}],
                    listen=lambda port: [{"address": f"127.0.0.1:{port}", **({"http2": "h2c"} if h2c else {})}],
                    mpm={"workers": 1, "threads_per_child": CAP, "server_limit": 16, "graceful_timeout": 10},
                    timeouts={"client_header": 20, "handshake": 10})
    silent = [socket.create_connection(("127.0.0.1", p.port)) for _ in range(CAP)]
    time.sleep(0.5)
    t0 = time.time()
    v = socket.create_connection(("127.0.0.1", p.port), timeout=5)
    v.sendall(b"GET / HTTP/1.1\r\nHost: v\r\n\r\n")
    got = read_all(v, 12.0, limit=40)
    took = time.time() - t0
    closed = 0
    for s in silent:
        s.setblocking(False)
        try:
            closed += s.recv(1) == b""
        except BlockingIOError:
            pass
        except ConnectionResetError:
            closed += 1
    print(f"{'h2c listener  ' if h2c else 'plain listener'}: {CAP} silent connections, then a GET from a new "
          f"client -> {got[:15]!r} after {took:.2f} s; silent connections closed for room: {closed}")
    for s in silent + [v]:
        s.close()
    p.stop()


trial(False)
trial(True)
