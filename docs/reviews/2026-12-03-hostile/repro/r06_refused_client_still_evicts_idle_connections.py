"""r06: at capacity, a client already over its per-client connection limit still makes the
worker close another client's idle keep-alive connection for each connection it attempts: the
room is made before the new connection's client is known, and then the newcomer is refused."""
import time

from h import Backend, ask, connect, start_proxy, status_of

backend = Backend(hold=20)
p = start_proxy([{"path": "/", "to": backend.url + "/"}], workers=1,
                mpm={"workers": 1, "threads_per_child": 8, "max_request_workers": 8},
                limits={"per_client": {"connections": 2}})
victims = []
for i in range(6):                                    # six clients, one idle keep-alive connection each
    s = connect(p.port, f"127.0.0.{100 + i}")
    assert ask(s, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n") == 200
    victims.append(s)
attacker = []
for i in range(2):                                    # the attacker's allowance: two slow requests
    s = connect(p.port, "127.0.0.66")
    s.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
    attacker.append(s)
time.sleep(0.5)
import select  # noqa: E402
import socket  # noqa: E402


def dead(s):
    if not select.select([s], [], [], 0)[0]:
        return False
    try:
        return s.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


closed = 0
for i in range(10):                                   # ten attempts, each over its limit
    try:
        s = connect(p.port, "127.0.0.66")
        outcome = status_of(s, 1.0)
        s.close()
    except OSError as exc:
        outcome = repr(exc)
    time.sleep(0.1)
    for k, v in enumerate(victims):                   # a victim whose connection was closed comes back
        if dead(v):
            closed += 1
            v.close()
            victims[k] = connect(p.port, f"127.0.0.{100 + k}")
            assert ask(victims[k], b"GET / HTTP/1.1\r\nHost: t\r\n\r\n") == 200
    print("attempt", i, "->", outcome, "; victims' connections closed so far:", closed)
print(f"victims' idle keep-alive connections closed for a client refused every time: {closed} (expected 0)")
print([line for line in p.error_text().splitlines() if "at capacity" in line][-1:])
