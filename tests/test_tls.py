"""TLS (issue #6): https/wss listeners with SNI, TLS to backends, and what fails cleanly."""

from __future__ import annotations

import asyncio
import datetime
import os
import socket
import ssl
import threading
import time

import pytest
import trustme
from h2client import H2Client
from rawbackend import RawBackend
from support import wait_for
from websockets.asyncio.client import connect
from wsutil import switch_response, upgrade_of, upgrade_request


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


def _files(tmp_path, cert, name: str) -> tuple[str, str]:
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert.private_key_pem.write_to_path(str(key_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    with open(cert_path, "ab") as f:
        for pem in cert.cert_chain_pems[1:]:
            f.write(pem.bytes())
    return str(cert_path), str(key_path)


def _client_context(ca, alpn: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if alpn:
        context.set_alpn_protocols(["http/1.1"])
    return context


def _tls_proxy(proxy_factory, tmp_path, ca, routes, sni=None, **kwargs):
    cert, key = _files(tmp_path, ca.issue_cert("localhost", "127.0.0.1"), "default")
    tls = {"cert": cert, "key": key}
    if sni:
        tls["sni"] = {name: dict(zip(("cert", "key"), _files(tmp_path, ca.issue_cert(name), name), strict=True))
                      for name in sni}
    proxy = proxy_factory(routes, start=False, **kwargs)
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "tls": tls}]
    return proxy.start()


def _https_get(proxy, ca, path="/", server_hostname="localhost") -> tuple[bytes, dict]:
    """(the whole answer, what the handshake agreed: alpn, version, peer certificate)."""
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    with _client_context(ca, alpn=True).wrap_socket(raw, server_hostname=server_hostname) as sock:
        agreed = {"alpn": sock.selected_alpn_protocol(), "version": sock.version(), "cert": sock.getpeercert()}
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {server_hostname}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data, agreed


def _strict_exchange(proxy, ca, request: bytes, version: ssl.TLSVersion | None = None) -> tuple[bytes, str]:
    """Send `request` as a client that lets no ragged EOF pass (suppress_ragged_eofs=False, as
    OpenSSL 3 by default) and read to the end: (what came, "close_notify" or "truncated")."""
    context = _client_context(ca)
    if version is not None:
        context.maximum_version = version
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    received = b""
    with context.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False) as sock:
        sock.sendall(request)
        try:
            while chunk := sock.recv(65536):        # b"" only at a close_notify
                received += chunk
        except ssl.SSLEOFError:
            return received, "truncated"
    return received, "close_notify"


@pytest.mark.timeout(30)
def test_https_get_and_wss_echo_through_a_tls_listener(proxy_factory, http_backend, ws_backend, tmp_path, ca):
    backend, echo = http_backend(), ws_backend()
    proxy = _tls_proxy(proxy_factory, tmp_path, ca,
                       [{"path": "/ws/", "to": echo.url + "/"}, {"path": "/", "to": backend.url + "/"}])
    data, agreed = _https_get(proxy, ca, "/page")
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"hello")
    assert agreed["alpn"] == "http/1.1" and agreed["version"] in ("TLSv1.2", "TLSv1.3")
    assert backend.header(0, "X-Forwarded-Proto") == ["https"]

    async def talk():
        async with connect(proxy.url("/ws/chat", "wss").replace("127.0.0.1", "localhost"),
                           ssl=_client_context(ca), max_size=None) as ws:
            await ws.send("over wss")
            small = await ws.recv()
            big = bytes(range(256)) * (16 * 4096)       # 16 MiB both ways
            await ws.send(big)
            return small, await ws.recv() == big
    assert asyncio.run(talk()) == ("over wss", True)
    # The backend saw a plain ws upgrade, told the client's scheme by X-Forwarded-Proto.
    assert echo.requests[0].headers["X-Forwarded-Proto"] == "https"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["TLSv1.2", "TLSv1.3"])
def test_a_request_followed_by_a_fin_without_close_notify_is_answered(proxy_factory, http_backend, tmp_path,
                                                                       ca, version):
    # The client half-closes at the TCP level the moment its request is out, as a plain client
    # may (and as one that skips close_notify does). OpenSSL 3 takes that EOF for a truncation
    # and fails the connection with a decode_error alert unless told otherwise; the request is
    # framed, so the proxy answers it, as it does on a plain listener.
    backend = http_backend()
    proxy = _tls_proxy(proxy_factory, tmp_path, ca, [{"path": "/", "to": backend.url + "/"}])
    context = _client_context(ca)
    context.maximum_version = version
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    with context.wrap_socket(raw, server_hostname="localhost") as sock:
        assert sock.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
        sock.sendall(b"GET /page HTTP/1.1\r\nHost: localhost\r\n\r\n")
        with socket.socket(fileno=os.dup(sock.fileno())) as same:
            same.shutdown(socket.SHUT_WR)          # the FIN, with no close_notify before it
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"hello"), answer[:200]
    assert len(backend.requests) == 1


@pytest.mark.timeout(30)
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["TLSv1.2", "TLSv1.3"])
def test_the_proxy_ends_its_tls_connections_with_close_notify(proxy_factory, http_backend, tmp_path, ca, version):
    # RFC 8446 §6.1 (RFC 5246 §7.2.1 for 1.2): each party MUST send close_notify before closing
    # its write side. A client that does not let ragged EOFs pass (here suppress_ragged_eofs=
    # False; OpenSSL 3 by default) takes a close without it for a truncation: SSLEOFError.
    backend = http_backend()
    proxy = _tls_proxy(proxy_factory, tmp_path, ca, [{"path": "/", "to": backend.url + "/"}])
    answer, ended = _strict_exchange(proxy, ca, b"GET /page HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                                     version)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"hello"), answer[:200]
    assert ended == "close_notify"


def _answer_then_reset(conn) -> None:
    """A 101 and some bytes for an upgrade, else the first half of a body without
    Content-Length (it ends at the close); then a reset."""
    head = conn.read_head()
    if upgrade_of(head.raw):
        conn.send(switch_response("websocket", head.raw) + b"backend bytes")
    else:
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nbackend bytes")
    time.sleep(0.3)                 # relayed before the reset
    conn.reset()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("request_head, status, tail", [
    (b"GET /page HTTP/1.1\r\nHost: localhost\r\n\r\n", 200, b"\r\n\r\nd\r\nbackend bytes\r\n"),
    (upgrade_request("/raw"), 101, b"\r\n\r\nbackend bytes")], ids=["response", "tunnel"])
def test_what_a_backend_reset_cut_short_ends_without_close_notify(proxy_factory, tmp_path, ca, request_head, status,
                                                                  tail):
    # A body read until the close (re-chunked to this HTTP/1.1 client: a chunk, no last chunk),
    # or an Upgrade protocol without framing of its own: with close_notify the client would
    # take what came for all of it. Without, it sees the truncation it is (nginx closes
    # "quietly" on errors too).
    backend = RawBackend(_answer_then_reset)
    try:
        proxy = _tls_proxy(proxy_factory, tmp_path, ca, [{"path": "/", "to": backend.url + "/"}])
        received, ended = _strict_exchange(proxy, ca, request_head)
        assert received.startswith(b"HTTP/1.1 %d" % status) and received.endswith(tail), received
        assert ended == "truncated"
    finally:
        backend.close()


def _half_closing_backend(conn) -> None:
    """Answer the upgrade, send b"backend done", half-close; then record what still comes."""
    head = conn.read_head()
    conn.send(switch_response("websocket", head.raw) + b"backend done")
    conn.sock.shutdown(socket.SHUT_WR)
    received = conn.take_buffered()
    while chunk := conn.sock.recv(65536):
        received += chunk
    conn.backend.results["received"] = received
    conn.backend.event("eof").set()


@pytest.mark.timeout(30)
def test_a_tunnel_half_closed_by_its_backend_is_half_closed_in_tls_too(proxy_factory, tmp_path, ca):
    # The backend's FIN reaches a TLS 1.3 client as close_notify (then the FIN): a clean end of
    # what the backend sends, where a bare FIN would be a truncation. The other direction stays
    # open (TLS 1.3 allows half-close): what the client sends after it still reaches the backend.
    backend = RawBackend(_half_closing_backend)
    try:
        proxy = _tls_proxy(proxy_factory, tmp_path, ca, [{"path": "/", "to": backend.url + "/"}])
        context = _client_context(ca)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        with context.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False) as sock:
            sock.sendall(upgrade_request("/chat"))
            received = b""
            while chunk := sock.recv(65536):    # b"" only at a close_notify
                received += chunk
            assert received.startswith(b"HTTP/1.1 101") and received.endswith(b"\r\n\r\nbackend done"), received
            sock.sendall(b"client after the backend's half-close")
            sock.unwrap()                       # our close_notify; the proxy's came already
        assert backend.event("eof").wait(10)
        assert backend.results["received"] == b"client after the backend's half-close"
        # Both sides ended cleanly: the tunnel's line says so (the client's close_notify, coming
        # after the proxy's own, is an EOF like any other).
        wait_for(lambda: any("/chat" in line for line in proxy.access_lines()), 10, what="the tunnel's line")
        line = next(line for line in proxy.access_lines() if "/chat" in line)
        assert line.endswith('end="closed"'), line
    finally:
        backend.close()


@pytest.mark.timeout(30)
def test_sni_picks_the_certificate_for_each_name(proxy_factory, http_backend, tmp_path, ca):
    backend = http_backend()
    proxy = _tls_proxy(proxy_factory, tmp_path, ca, [{"path": "/", "to": backend.url + "/"}],
                       sni=["api.example.test", "www.example.test"])
    for name in ("api.example.test", "www.example.test"):
        data, agreed = _https_get(proxy, ca, server_hostname=name)   # verifies the name against the cert
        assert data.startswith(b"HTTP/1.1 200")
        assert agreed["cert"]["subjectAltName"] == (("DNS", name),)
    data, agreed = _https_get(proxy, ca, server_hostname="localhost")   # unknown name: the default one
    assert ("DNS", "localhost") in agreed["cert"]["subjectAltName"]


@pytest.mark.timeout(30)
def test_wrong_protocol_on_either_listener_is_refused_cleanly(proxy_factory, http_backend, tmp_path, ca):
    backend = http_backend()
    tls_proxy = _tls_proxy(proxy_factory, tmp_path, ca, [{"path": "/", "to": backend.url + "/"}])
    plain_proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}])
    # A plain client on the TLS listener: the handshake fails, the connection closes, nothing reaches a backend.
    with socket.create_connection(("127.0.0.1", tls_proxy.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        answer = b""
        try:
            while chunk := sock.recv(4096):
                answer += chunk
        except ConnectionResetError:
            pass
        assert not answer.startswith(b"HTTP/1.1 200")
    # A TLS client on the plain listener: its ClientHello is not HTTP, so it gets a 400 and the close.
    raw = socket.create_connection(("127.0.0.1", plain_proxy.port), timeout=5)
    with pytest.raises(ssl.SSLError):
        _client_context(ca).wrap_socket(raw, server_hostname="localhost")
    raw.close()
    assert backend.requests == []
    wait_for(lambda: "TLS handshake failed" in tls_proxy.error_text(), 5, what="handshake failure logged")
    time.sleep(0.6)
    assert sum(w["tls_failures"] for w in tls_proxy.status()["workers"]) >= 1
    # Both listeners still serve.
    assert _https_get(tls_proxy, ca)[0].startswith(b"HTTP/1.1 200")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("warm", [False, True], ids=["handshake-object", "in-the-lane"])
def test_stalled_handshake_is_dropped_while_others_are_served(proxy_factory, http_backend, tmp_path, ca, warm):
    """`warm`: after a whole exchange, a new connection's handshake runs in the lane's C
    (worker.newcomer); else in worker.tls's ServerHandshake."""
    backend = http_backend()
    proxy = _tls_proxy(proxy_factory, tmp_path, ca, [{"path": "/", "to": backend.url + "/"}],
                       workers=1, timeouts={"handshake": 1})
    if warm:
        assert _https_get(proxy, ca)[0].startswith(b"HTTP/1.1 200")
    stalled = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    stalled.sendall(b"\x16\x03\x01")          # the start of a ClientHello, and then nothing
    assert _https_get(proxy, ca)[0].startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    assert stalled.recv(100) == b""           # closed by the proxy after its handshake timeout
    assert 0.5 < time.monotonic() - started < 4
    stalled.close()
    wait_for(lambda: "handshake timed out" in proxy.error_text(), 5, what="timeout logged")


class TlsBackend:
    """A minimal HTTPS server in a thread (the stdlib ssl module, nothing of ours)."""

    def __init__(self, cert_files: tuple[str, str]):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(*cert_files)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.served = 0
        self.connections = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw):
        try:
            with self.context.wrap_socket(raw, server_side=True) as conn:
                conn.settimeout(10)
                while True:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(4096)
                        if not chunk:
                            return
                        data += chunk
                    self.served += 1
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nover https")
        except (OSError, ssl.SSLError):
            return

    def _handshake_and_head(self, raw) -> tuple[ssl.SSLSocket, bytes]:
        """For the one-request subclasses: the TLS connection and what it sent up to the end
        of the first head (and any bytes behind it)."""
        conn = self.context.wrap_socket(raw, server_side=True)
        conn.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(4096)
        return conn, data

    def close(self):
        self.sock.close()


@pytest.mark.timeout(40)
def test_tls_to_backends_verifies_and_reuses(proxy_factory, tmp_path, ca):
    good = TlsBackend(_files(tmp_path, ca.issue_cert("127.0.0.1", "localhost"), "good"))
    wrong_host = TlsBackend(_files(tmp_path, ca.issue_cert("elsewhere.test"), "wrong"))
    expired_cert = ca.issue_cert("127.0.0.1", not_after=datetime.datetime.now(datetime.timezone.utc)
                                 - datetime.timedelta(days=1))
    expired = TlsBackend(_files(tmp_path, expired_cert, "expired"))
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    tls = {"ca": str(ca_file)}
    proxy = proxy_factory([
        {"path": "/good/", "to": f"https://127.0.0.1:{good.port}/", "tls": tls},
        {"path": "/wrong/", "to": f"https://127.0.0.1:{wrong_host.port}/", "tls": tls},
        {"path": "/expired/", "to": f"https://127.0.0.1:{expired.port}/", "tls": tls},
        {"path": "/unverified/", "to": f"https://127.0.0.1:{wrong_host.port}/", "tls": {"verify": False}},
    ], workers=1)
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            for _ in range(5):
                sock.sendall(b"GET /good/x HTTP/1.1\r\nHost: t\r\n\r\n")
                data = b""
                while not data.endswith(b"over https"):
                    data += sock.recv(4096)
                assert data.startswith(b"HTTP/1.1 200")
        assert good.served == 5
        assert good.connections == 1      # the pool reused one backend TLS connection for all five
        for path, why in (("/wrong/", "address mismatch"), ("/expired/", "certificate has expired")):
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
                assert sock.recv(4096).startswith(b"HTTP/1.1 502")
            wait_for(lambda why=why: why in proxy.error_text(), 5, what=f"log line naming {why}")
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            sock.sendall(b"GET /unverified/ HTTP/1.1\r\nHost: t\r\n\r\n")
            data = b""
            while not data.endswith(b"over https"):
                data += sock.recv(4096)
            assert data.startswith(b"HTTP/1.1 200")
        assert "is not verified" in proxy.error_text()
    finally:
        for backend in (good, wrong_host, expired):
            backend.close()


class CloseDelimitedTlsBackend(TlsBackend):
    """Answers with a body that ends at the close (no Content-Length), then closes with
    close_notify or, when `notify` is False, with a bare FIN."""

    def __init__(self, cert_files: tuple[str, str], notify: bool):
        self.notify = notify
        super().__init__(cert_files)

    def _serve(self, raw):
        conn, _ = self._handshake_and_head(raw)
        self.served += 1
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"x" * 5000 + b"END")
        if self.notify:
            conn.unwrap().close()            # close_notify, then the FIN
        else:
            with socket.socket(fileno=os.dup(conn.fileno())) as same:
                same.shutdown(socket.SHUT_RDWR)  # the FIN alone
            conn.close()


@pytest.mark.timeout(40)
@pytest.mark.parametrize("notify", [True, False], ids=["close_notify", "bare FIN"])
def test_a_body_until_close_from_a_tls_backend_is_whole_only_with_close_notify(proxy_factory, tmp_path, ca, notify):
    # RFC 9112 §9.8: a response with neither Content-Length nor chunked "is complete only if a
    # valid closure alert has been received". Without one, the proxy cuts the response short:
    # its TLS client gets no close_notify either, and sees the truncation.
    backend = CloseDelimitedTlsBackend(_files(tmp_path, ca.issue_cert("127.0.0.1"), "backend"), notify)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    try:
        proxy = _tls_proxy(proxy_factory, tmp_path, ca, [{"path": "/", "to": f"https://127.0.0.1:{backend.port}/",
                                                          "tls": {"ca": str(ca_file)}}], workers=1)
        received, ended = _strict_exchange(proxy, ca,
                                           b"GET /page HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        # Re-chunked for this HTTP/1.1 client: the last chunk only when the body was whole.
        assert received.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in received.lower()
        assert received.endswith(b"END\r\n0\r\n\r\n" if notify else b"END\r\n"), received[-100:]
        assert ended == ("close_notify" if notify else "truncated")
        if not notify:
            wait_for(lambda: "without close_notify (response cut)" in proxy.error_text(), 5, what="the cut logged")
    finally:
        backend.close()


class AnswersAfterEofTlsBackend(TlsBackend):
    """A WebSocket backend over TLS: 101, then reads to the proxy's EOF (its close_notify),
    answers after it, and ends with close_notify of its own."""

    def _serve(self, raw):
        conn, head = self._handshake_and_head(raw)
        conn.sendall(switch_response("websocket", head))
        received = head.split(b"\r\n\r\n", 1)[1]
        while chunk := conn.recv(65536):
            received += chunk
        conn.sendall(b"after your close: " + received)
        conn.unwrap().close()


@pytest.mark.timeout(40)
def test_an_h2_websocket_to_a_tls_backend_ends_with_end_stream_after_both_close_notifies(proxy_factory,
                                                                                         tmp_path, ca):
    # The client ends its side (END_STREAM): the proxy half-closes the TLS backend with its
    # close_notify. The backend's own close_notify, coming after it, is a clean EOF: END_STREAM,
    # not a RST_STREAM.
    backend = AnswersAfterEofTlsBackend(_files(tmp_path, ca.issue_cert("127.0.0.1"), "backend"))
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    try:
        proxy = proxy_factory([{"path": "/", "to": f"wss://127.0.0.1:{backend.port}/", "tls": {"ca": str(ca_file)}}],
                              workers=1, start=False)
        proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"}]
        proxy.start()
        client = H2Client(proxy.port)
        ws = client.websocket("/chat")
        assert ws.status == 200
        client.send_data(ws.id, b"client bytes", end=True)
        client.wait(lambda: ws.finished, 10, "the stream's end")
        assert bytes(ws.body) == b"after your close: client bytes"
        assert ws.ended and ws.reset is None, ws.reset
        client.close()
    finally:
        backend.close()


@pytest.mark.timeout(40)
def test_reload_rereads_certificates_and_refuses_a_mismatched_pair(proxy_factory, http_backend, tmp_path, ca):
    backend = http_backend()
    proxy = _tls_proxy(proxy_factory, tmp_path, ca, [{"path": "/", "to": backend.url + "/"}])
    first = _https_get(proxy, ca)[1]["cert"]["serialNumber"]
    # New files at the same paths: a reload picks them up for new connections.
    tls = proxy.config["listen"][0]["tls"]
    renewed = ca.issue_cert("localhost", "127.0.0.1")
    renewed.private_key_pem.write_to_path(tls["key"])
    renewed.cert_chain_pems[0].write_to_path(tls["cert"])
    assert proxy.reload().returncode == 0
    proxy.wait_ready(generation=2)
    second = _https_get(proxy, ca)[1]["cert"]["serialNumber"]
    assert second != first
    # A key that does not match its certificate is a FILE:LINE error; generation 2 keeps serving.
    other = ca.issue_cert("localhost")
    other.private_key_pem.write_to_path(tls["key"])
    result = proxy.reload()
    assert result.returncode == 1 and f"{proxy.config_path}:" in result.stderr
    assert "do not match" in result.stderr
    assert proxy.status()["generation"] == 2
    assert _https_get(proxy, ca)[1]["cert"]["serialNumber"] == second
