"""How a body's exchange ends when the backend ends it first (review 2026-12-03-bodies).

- A backend that answers an upload early (a 413) and resets, not reading the rest: the client
  gets the 413, not a 502 of ours (#1).  HAProxy relays such an answer too.
- A backend that resets after its whole response, while the client reads slower than it
  wrote: the client gets the whole response, which was in the proxy's receive queue (#2).
- A final answer relayed before the request body ended says `Connection: close`: the proxy
  closes the connection after it (the rest of the body is not read), as RFC 9110 §10.1.1
  asks it to say (#3).
- 1xx heads relayed before the final response are no part of its body: the access log's %b
  leaves them out, as Apache's does (#4).

One master for the module, one worker, on the copy path (MPM_SPLICE=0): the path TLS takes,
and where #1 and #2 showed every time (the splice path, most times); the raw backend
dispatches on the target.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import struct
import termios
import threading
import time

import pytest
from proxyproc import running_proxy, wait_access
from rawbackend import RawBackend, RawConn
from rawsock import read_head, recv_until_eof, status_of, tokens

WHOLE = 5 << 20        # the response that the backend resets behind
# The body the backend answers early; what is sent of it stops at the proxy's close.  1 TiB:
# of a 1 GiB one, a backend that reads ("taken") could take it all over loopback before it
# answered, and the 413 then answered a whole request, kept alive (this test failed 1 run in 5).
UPLOAD = 1 << 40


def _unsent(sock: socket.socket) -> int:
    """Bytes the kernel has not had acknowledged yet (TIOCOUTQ)."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]


def _handler(conn: RawConn) -> None:
    head = conn.read_head()
    if head is None:
        return
    while head.target.startswith("/continue"):    # 100 Continue, the body, the answer; keep-alive
        conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        conn.read_body(head)
        conn.send(b"HTTP/1.1 204 No Content\r\n\r\n" if head.target.endswith("204")
                  else b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        head = conn.read_head()
        if head is None:
            return
    if head.target.startswith("/expect"):      # a 401 to the head, the body not waited for
        conn.send(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic\r\nContent-Length: 0\r\n\r\n")
        conn.wait_eof(5)
        return
    if head.target.startswith("/early"):
        # A 413 before the body, when the test says, then a close with the body unread: a RST.
        answer = conn.backend.event("answer")
        conn.sock.settimeout(0.05)
        while not answer.is_set():      # /early/reading/: takes the body until told to answer
            if "/reading/" in head.target:
                try:
                    conn.sock.recv(1 << 20)
                except TimeoutError:
                    pass
            else:
                answer.wait(0.05)
        conn.send(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large")
        conn.reset()
        conn.backend.event("answered").set()
        return
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % WHOLE + b"r" * WHOLE)
    deadline = time.monotonic() + 5      # every byte in the proxy's receive queue, then the RST
    while _unsent(conn.sock) and time.monotonic() < deadline:
        time.sleep(0.01)
    conn.backend.results["unsent"] = _unsent(conn.sock)
    conn.reset()
    conn.backend.event("reset").set()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    backend = RawBackend(_handler)
    with running_proxy(tmp_path_factory.mktemp("endings"), [{"path": "/", "to": backend.url + "/"}], workers=1,
                       environ={"MPM_SPLICE": "0"}, limits={"request_body": 0}) as proxy:
        yield proxy, backend
    backend.close()


def _upload_and_read(proxy, backend, target: bytes) -> bytes:
    """A 1 TiB POST, its body pumped until the proxy closes; what the client got.  The backend
    answers and resets while the worker is stopped (SIGSTOP), once the proxy holds body bytes
    the backend has not taken: the worker's next turn sees the reset and the answer at once,
    as it does when they come close together (in the other order, the answer read before the
    reset, nothing was ever wrong)."""
    backend.event("answer").clear()
    backend.event("answered").clear()
    [pid] = proxy.worker_pids()
    sock = proxy.connect(5)
    sock.sendall(b"POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (target, UPLOAD))
    done = threading.Event()

    def pump():
        left = UPLOAD
        try:
            while left and not done.is_set():
                left -= sock.send(b"x" * min(left, 65536))
        except OSError:
            pass
    pumping = threading.Thread(target=pump, daemon=True)
    pumping.start()
    time.sleep(0.5)     # /early/up: the backend reads nothing, the proxy holds what it could not send
    os.kill(pid, signal.SIGSTOP)
    try:
        backend.event("answer").set()
        assert backend.event("answered").wait(5)
        time.sleep(0.1)
    finally:
        os.kill(pid, signal.SIGCONT)
    try:
        return recv_until_eof(sock, limit=5)
    except ConnectionResetError:
        return b""
    finally:
        done.set()
        pumping.join(5)
        sock.close()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("target", [b"/early/up", b"/early/reading/up"], ids=["held", "taken"])
def test_an_early_413_to_an_upload_reaches_the_client_though_the_backend_resets(env, target):
    """held: the proxy's next flush of body bytes it held fails; taken: its next send of a read
    of the client's fails."""
    proxy, backend = env
    answers = [_upload_and_read(proxy, backend, target) for _ in range(2)]
    assert [status_of(a) for a in answers] == [413] * 2, [a[:40] for a in answers]
    assert all(a.endswith(b"too large") for a in answers), answers
    # Said before the request's end (else the upload was taken whole: not this test's case).
    assert all("close" in tokens(a.split(b"\r\n\r\n")[0], "Connection") for a in answers), answers
    assert "(502)" not in proxy.error_text()


@pytest.mark.timeout(30)
def test_a_whole_response_the_backend_resets_behind_reaches_a_slow_client_whole(env):
    proxy, backend = env
    with proxy.connect(10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.sendall(b"GET /whole HTTP/1.1\r\nHost: t\r\n\r\n")
        assert backend.event("reset").wait(10)     # a slow client: reads only after the reset
        time.sleep(0.2)
        head, buf = read_head(sock)
        got = len(buf)
        sock.settimeout(5)
        while got < WHOLE:
            data = sock.recv(1 << 20)
            if not data:
                break
            got += len(data)
    assert backend.results["unsent"] == 0, "the backend reset before all of its response was taken"
    assert (status_of(head), got) == (200, WHOLE), proxy.error_text()[-400:]


@pytest.mark.timeout(15)
def test_a_final_answer_before_the_request_body_says_the_connection_closes(env):
    proxy, _ = env
    with proxy.connect(5) as sock:
        sock.sendall(b"POST /expect/form HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 1000\r\n\r\n")
        head, buf = read_head(sock)
        rest = recv_until_eof(sock, buf, limit=5)
    assert status_of(head) == 401
    assert "close" in tokens(head, "Connection"), head
    assert rest == b""              # and it did close, the body unread


@pytest.mark.timeout(15)
@pytest.mark.parametrize("target, body_field", [("/continue/204", "-"), ("/continue/200", "5")])
def test_the_access_logs_body_bytes_leave_out_the_interim_heads(env, target, body_field):
    proxy, _ = env
    with proxy.connect(5) as sock:
        sock.sendall(b"POST %s HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 3\r\n"
                     b"Connection: close\r\n\r\n" % target.encode())
        interim, buf = read_head(sock)
        assert status_of(interim) == 100
        sock.sendall(b"abc")
        recv_until_eof(sock, buf, limit=5)
    [line] = wait_access(proxy, f"POST {target} ")
    status, body_bytes = line.split('"')[2].split()[:2]        # combined: ... "request" status %b ...
    assert (status, body_bytes) == (target[-3:], body_field), line
