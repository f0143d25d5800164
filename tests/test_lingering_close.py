"""Lingering close (worker.linger): a client that is still sending when the proxy answers and
closes (a 413 before the body, a refused head) gets the answer, can finish its send, and
sees the connection end with a FIN, not a reset: the proxy half-closes and reads what comes,
as nginx's `lingering_close` and Apache's lingering close do.

Closing over unread bytes instead makes the kernel send a RST, which fails the client's
next send (EPIPE / ECONNRESET: many clients stop there, without reading the answer) and, on
a real network, throws away whatever of the answer had not left yet."""

from __future__ import annotations

import errno
import fcntl
import socket
import ssl
import struct
import termios
import time

import pytest
import trustme
from backends import HttpBackend
from h2client import H2Client
from hyperframe.frame import DataFrame, GoAwayFrame, SettingsFrame
from proxyproc import Proxy
from rawsock import status_of
from support import cert_files, running, wait_for

from tunnel.endpoint import Endpoint
from worker import linger
from worker.loop import EPOLLIN, EventLoop

BODY = 8 * 1024 * 1024          # more than loopback's socket buffers hold: the proxy must read it
OVER_LIMIT = b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % BODY


def _handler(req, body):
    return 200, [("Content-Type", "text/plain")], b"len=%d" % len(body)


@pytest.fixture(scope="module")
def backend():
    b = HttpBackend(_handler)
    yield b
    b.close()


def _proxy(tmp_path, backend, lingering=None, tls=None, **sections) -> Proxy:
    timeouts = {"lingering": lingering} if lingering is not None else {}
    proxy = Proxy(tmp_path / "proxy", [{"path": "/", "to": backend.url + "/"}], workers=1,
                  limits={"request_body": 1000}, timeouts=timeouts, **sections)
    if tls is not None:
        proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "tls": {"cert": tls[0], "key": tls[1]}}]
    return proxy.start()


def _send_all(sock, data: bytes) -> OSError | None:
    """Send `data` whole, without reading; the error that stopped it, if one did."""
    view = memoryview(data)
    try:
        for pos in range(0, len(data), 65536):
            sock.sendall(view[pos:pos + 65536])
    except OSError as exc:
        return exc
    return None


def _read_to_end(sock, timeout: float = 10.0) -> tuple[bytes, str]:
    """Everything until the connection ends, and how it ended: 'eof', 'reset' or 'timeout'."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return data, "reset"
        except ssl.SSLEOFError:          # the transport ended without a close_notify
            return data, "reset"
        except TimeoutError:
            return data, "timeout"
        if not chunk:
            return data, "eof"
        data += chunk


@pytest.mark.parametrize("head, status", [(OVER_LIMIT, 413), (b"GET /x HTTP/1.1\r\nHost: t\r\nBad Header: y\r\n\r\n", 400)],
                         ids=["413 before the body", "400 for the head"])
def test_a_client_still_sending_gets_the_answer_and_a_clean_end(tmp_path, backend, head, status):
    proxy = _proxy(tmp_path, backend)
    try:
        with proxy.connect(15) as sock:
            failed = _send_all(sock, head + b"u" * BODY)
            answer, end = _read_to_end(sock)
        assert failed is None, f"the proxy stopped reading: the client's send failed with {failed!r}"
        assert status_of(answer) == status, answer[:200]
        assert end == "eof", f"the connection ended with a {end}, not a FIN"
        assert not any(b"/upload" in raw for raw in backend.raw), "the refused request reached the backend"
    finally:
        proxy.stop()


def test_over_tls_the_413_and_a_close_notify_reach_a_client_still_sending(tmp_path, backend):
    ca = trustme.CA()
    proxy = _proxy(tmp_path, backend, tls=cert_files(ca, tmp_path, "localhost", "127.0.0.1"))
    try:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        with context.wrap_socket(proxy.connect(15), server_hostname="localhost") as sock:
            failed = _send_all(sock, OVER_LIMIT + b"u" * BODY)
            answer, end = _read_to_end(sock)
        assert failed is None, f"the proxy stopped reading: the client's send failed with {failed!r}"
        assert status_of(answer) == 413, answer[:200]
        assert end == "eof", f"the connection ended with a {end}, not a close_notify and a FIN"
    finally:
        proxy.stop()


def test_a_client_that_goes_quiet_is_closed_after_timeouts_lingering(tmp_path, backend):
    """Half-closed at once (the client reads the end of the answer), then read for as long as
    the client keeps sending, and closed `timeouts.lingering` after its last byte: a byte sent
    later meets a closed socket (a reset), one sent before is taken."""
    proxy = _proxy(tmp_path, backend, lingering=2)
    try:
        with proxy.connect(15) as sock:
            sock.sendall(OVER_LIMIT + b"u" * 5000)       # the head, and part of the body
            answer, end = _read_to_end(sock, timeout=5)
            assert status_of(answer) == 413 and end == "eof", (answer[:200], end)
            time.sleep(0.3)
            sock.sendall(b"u" * 1000)                     # still read: it resets the quiet time
            time.sleep(0.3)
            assert _reset_seen(sock) is False, "closed before timeouts.lingering passed"
            time.sleep(3.5)
            sock.sendall(b"u")                            # the socket is gone: the kernel resets
            time.sleep(0.3)
            assert _reset_seen(sock) is True, "still open 3.5 s after the client's last byte"
        wait_for(lambda: proxy.status()["workers"][0]["connections"] == 0, 3, 0.1, "no connection counted")
    finally:
        proxy.stop()


def _reset_seen(sock) -> bool:
    """Whether the peer has reset the connection (our side already read its FIN)."""
    sock.settimeout(0.2)
    try:
        sock.recv(1)
        sock.send(b"u")
    except (ConnectionResetError, BrokenPipeError):
        return True
    return False


def test_an_answer_of_ours_to_a_whole_request_closes_at_once(tmp_path, backend):
    """A 404 to a complete GET with `Connection: close` has nothing left to drain: the socket
    closes at once (a byte sent after it meets a reset), not held for timeouts.lingering."""
    proxy = Proxy(tmp_path / "proxy", [{"path": "/app/", "to": backend.url + "/"}], workers=1)
    proxy.start()
    try:
        with proxy.connect(15) as sock:
            sock.sendall(b"GET /elsewhere HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            answer, end = _read_to_end(sock, timeout=5)
            assert status_of(answer) == 404 and end == "eof", (answer[:100], end)
            time.sleep(0.2)
            sock.send(b"u")
            time.sleep(0.3)
            assert _reset_seen(sock) is True, "the proxy still holds the connection of a whole request"
    finally:
        proxy.stop()


def test_lingering_0_closes_at_once(tmp_path, backend):
    """The switch: with `timeouts.lingering: 0` the proxy closes over the unread body, and the
    client meets the reset (what every close did before lingering)."""
    proxy = _proxy(tmp_path, backend, lingering=0)
    try:
        with proxy.connect(15) as sock:
            failed = _send_all(sock, OVER_LIMIT + b"u" * BODY)
            _, end = _read_to_end(sock)
        assert failed is not None and failed.errno in (errno.EPIPE, errno.ECONNRESET), failed
        assert end in ("reset", "eof")    # the 413 may or may not still be readable after the RST
    finally:
        proxy.stop()


def _refused_then_reloaded(proxy, sock) -> None:
    """`sock` gets a 413 with 5000 bytes of its body sent and the rest not; then a reload."""
    sock.sendall(OVER_LIMIT + b"u" * 5000)
    sock.settimeout(5)
    assert status_of(sock.recv(65536)) == 413
    assert proxy.reload().returncode == 0
    proxy.wait_ready(generation=2)


def test_a_reload_lets_a_lingering_client_finish_and_then_the_old_worker_exits(tmp_path, backend):
    """The refused client is its old worker's last socket: the reload waits for it (it can
    still send, and reads a FIN), and the worker exits once it has gone."""
    proxy = _proxy(tmp_path, backend, lingering=30)
    try:
        old = proxy.worker_pids()
        with proxy.connect(15) as sock:
            _refused_then_reloaded(proxy, sock)
            time.sleep(0.5)
            assert all(running(pid) for pid in old), "the old worker left its lingering client behind"
            failed = _send_all(sock, b"u" * BODY)
            rest, end = _read_to_end(sock, timeout=5)
            assert failed is None and end == "eof", (failed, end)
        wait_for(lambda: not any(running(pid) for pid in old), 5, 0.1, "the old worker to exit")
    finally:
        proxy.stop()


def test_graceful_timeout_ends_the_wait_for_a_silent_lingering_client(tmp_path, backend):
    proxy = _proxy(tmp_path, backend, lingering=30, mpm={"graceful_timeout": 1})
    try:
        old = proxy.worker_pids()
        with proxy.connect(15) as sock:
            _refused_then_reloaded(proxy, sock)
            wait_for(lambda: not any(running(pid) for pid in old), 8, 0.1, "the old worker to exit")
    finally:
        proxy.stop()


def test_a_client_sending_without_pause_is_read_past_timeouts_lingering(tmp_path, backend):
    """timeouts.lingering is a quiet time: a client that never pauses is read (not reset)
    until it is done, whatever that timeout says (up to 30 s)."""
    proxy = _proxy(tmp_path, backend, lingering=1)
    try:
        with proxy.connect(15) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)    # never short of bytes to send
            sock.sendall(OVER_LIMIT)
            sock.settimeout(5)
            assert status_of(sock.recv(65536)) == 413
            chunk, started, failed = b"u" * (1 << 20), time.monotonic(), None
            try:
                while time.monotonic() - started < 4.0:
                    sock.sendall(chunk)
            except OSError as exc:
                failed = exc
            assert failed is None, f"reset after {time.monotonic() - started:.1f}s of sending: {failed!r}"
    finally:
        proxy.stop()


def test_a_read_that_leaves_more_to_read_counts_as_traffic():
    """The quiet time restarts with every event that brought bytes, also one that leaves
    some unread (READS_PER_EVENT reads, then back to the loop): a real TCP pair whose
    receive queue holds more than one event reads, and the worker's own loop."""
    loop = EventLoop()
    listener = socket.create_server(("127.0.0.1", 0))
    peer = socket.create_connection(listener.getsockname())
    ours, _ = listener.accept()
    listener.close()
    try:
        ours.setblocking(False)
        peer.setblocking(False)
        queued = 0
        try:
            while queued < 4 << 20:
                queued += peer.send(b"u" * 65536)
        except BlockingIOError:
            pass
        time.sleep(0.2)
        assert queued > (linger.READS_PER_EVENT + 1) * 65536, queued
        lingering = linger.LingeringSet(lambda: None)
        linger.close_or_linger(lingering, Endpoint(loop, ours), True, 5.0)
        (socket_lingering,) = lingering
        loop.now += 4.0                            # 4 of the 5 quiet seconds have passed
        socket_lingering.on_event(EPOLLIN)
        assert _unread(ours) > 0, "the test needs bytes left after one event's reads"
        assert socket_lingering.deadline >= loop.now + 5.0 - 1e-6, "bytes read, yet the quiet time ran on"
        socket_lingering.close()
        assert not lingering
    finally:
        peer.close()
        if ours.fileno() >= 0:
            ours.close()
        loop.close()


def _unread(sock) -> int:
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]


def test_many_lingering_clients_leave_the_worker_serving(tmp_path, backend):
    """Fifty clients refused and lingering at once: a normal request is still served."""
    proxy = _proxy(tmp_path, backend, lingering=30)
    socks = []
    try:
        for _ in range(50):
            sock = proxy.connect(15)
            sock.sendall(OVER_LIMIT + b"u" * 1000)
            socks.append(sock)
        for sock in socks:
            sock.settimeout(5)
            assert status_of(sock.recv(65536)) == 413
        with proxy.connect(5) as sock:
            sock.sendall(b"GET /ok HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            answer, end = _read_to_end(sock, timeout=5)
        assert status_of(answer) == 200 and answer.endswith(b"len=0"), answer[-200:]
        assert end == "eof"
    finally:
        for sock in socks:
            sock.close()
        proxy.stop()




def test_an_http2_client_sent_a_goaway_for_its_error_reads_it_and_a_clean_end(tmp_path, backend):
    """HTTP/2: DATA on stream 0 is a connection error (RFC 9113 §6.1): GOAWAY PROTOCOL_ERROR,
    and the connection ends, while the client still has 8 MiB on its way."""
    proxy = Proxy(tmp_path / "h2", [{"path": "/", "to": backend.url + "/"}], workers=1)
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"}]
    proxy.start()
    try:
        with proxy.connect(15) as sock:
            bad = DataFrame(1).serialize()
            bad = bad[:5] + b"\x00\x00\x00\x00" + bad[9:]         # stream 0: not allowed for DATA
            filler = b"\x00" * BODY
            failed = _send_all(sock, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0).serialize() + bad + filler)
            answer, end = _read_to_end(sock)
        assert failed is None, f"the client's send failed with {failed!r}"
        assert end == "eof", f"the connection ended with a {end}, not a FIN"
        assert _goaway_error(answer) == 0x1, answer[:200]
    finally:
        proxy.stop()


def test_an_idle_http2_client_holds_a_reload_for_half_a_second_at_most(tmp_path, backend):
    """After a reload's GOAWAY an idle HTTP/2 connection lingers only for what may race the
    GOAWAY (0.5 s of quiet), not timeouts.lingering: a client that neither closes nor sends (a
    phone asleep) does not keep the old worker 5 s."""
    proxy = Proxy(tmp_path / "h2", [{"path": "/", "to": backend.url + "/"}], workers=1)
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"}]
    proxy.start()
    try:
        client = H2Client(proxy.port)
        assert client.get("/x").status == 200
        old = proxy.worker_pids()
        started = time.monotonic()
        assert proxy.reload().returncode == 0
        wait_for(lambda: not any(running(pid) for pid in old), 10, 0.05, "the old worker to exit")
        took = time.monotonic() - started
        assert took < 3.0, f"the old worker stayed {took:.2f}s for an idle HTTP/2 client"
        client.close()
    finally:
        proxy.stop()


def _goaway_error(data: bytes) -> int | None:
    """The error code of the GOAWAY among the frames in `data`."""
    pos = 0
    while pos + 9 <= len(data):
        length = int.from_bytes(data[pos:pos + 3], "big")
        if data[pos + 3] == GoAwayFrame.type and pos + 17 <= len(data):
            return int.from_bytes(data[pos + 13:pos + 17], "big")
        pos += 9 + length
    return None
