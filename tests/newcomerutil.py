"""What the tests of worker.newcomer share: a new TLS connection that the lane takes as a
Newcomer (it follows a whole exchange on another connection, so an idle backend connection
waits in the pool), a backend with a few shapes of response, and reads that say how they ended;
a one-worker TLS proxy, its clients, and one that stops halfway through its handshake."""

from __future__ import annotations

import re
import socket
import ssl
import time

from proxyproc import Proxy
from rawbackend import respond

REQ = b"GET /%s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


def shapes(pause: float = 0.6, parts: float = 0.5):
    """A RawBackend handler: /pause answers after `pause` s, /parts sends its body in two parts
    `parts` s apart, /hints a 103 first, /drop resets, /close-after closes after its answer; the
    rest is echoed (method, target, X-Forwarded-For)."""
    def handler(conn) -> None:
        while (head := conn.read_head()) is not None:
            if head.target == "/pause":
                time.sleep(pause)
            elif head.target == "/hints":
                conn.send(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n")
                time.sleep(0.2)
            elif head.target == "/drop":
                conn.reset()
                return
            elif head.target == "/parts":
                conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nfirst")
                time.sleep(parts)
                conn.send(b"-last")
                continue
            elif head.target == "/close-after":
                conn.send(respond(200, b"bye", headers=[("Connection", "close")]))
                return
            conn.send(respond(200, f"{head.method} {head.target} xff={head.get('x-forwarded-for')}".encode()))
    return handler


def read_marked(sock, timeout: float = 4.0) -> bytes:
    """What comes until the close, its Date fields out, and how it ended: <closed>, <timeout>, or
    the exception's name (an SSLEOFError: closed without close_notify)."""
    sock.settimeout(timeout)
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
        got += b"<closed>"
    except TimeoutError:
        got += b"<timeout>"
    except (ssl.SSLError, OSError) as exc:
        got += f"<{type(exc).__name__}>".encode()
    return re.sub(rb"Date: [^\r]*\r\n", b"", got)


def newcomer(proxy):
    """A new TLS connection, its handshake done, right after a whole exchange on another one."""
    with proxy.connect() as warm:
        warm.sendall(REQ % b"warm")
        read_marked(warm)
    time.sleep(0.05)
    return proxy.connect()


def combined_lines(proxy, backend_port: int) -> list[str]:
    """The combined-format access log without the clock (%t, %D) and the backend's port."""
    return [re.sub(r"\[[^]]*\]", "[t]", re.sub(r'" \d+ "/', '" D "/', line)).replace(str(backend_port), "P")
            for line in proxy.access_lines()]


def echo(conn) -> None:
    """A RawBackend handler: each request answered with its method and target."""
    while (head := conn.read_head()) is not None:
        conn.send(respond(200, f"{head.method} {head.target}".encode()))


def tls_proxy(directory, ca, backend, cert: tuple[str, str] | None = None, **options) -> Proxy:
    """A started one-worker proxy, one route to `backend`, listening with TLS: a certificate of
    `ca` for localhost, or `cert` (its paths: certificate, key).  `options` go to Proxy."""
    if cert is None:
        issued = ca.issue_cert("localhost", "127.0.0.1")
        cert = str(directory / "cert.pem"), str(directory / "key.pem")
        issued.cert_chain_pems[0].write_to_path(cert[0])
        issued.private_key_pem.write_to_path(cert[1])
    proxy = Proxy(directory, [{"path": "/", "to": backend.url + "/"}], workers=1, **options)
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "tls": {"cert": cert[0], "key": cert[1]}}]
    proxy.start()
    return proxy


def client_context(ca, alpn: tuple[str, ...] = ("http/1.1",), tls13: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.set_alpn_protocols(list(alpn))
    if tls13:
        context.minimum_version = ssl.TLSVersion.TLSv1_3
    return context


def https_get(port: int, context: ssl.SSLContext, target: str) -> bytes:
    """One request with `Connection: close` on a new connection: what comes until the close."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with context.wrap_socket(raw, server_hostname="localhost") as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
    return got


class HalfwayClient:
    """A TLS client on memory buffers that has sent its ClientHello and read the server's flight
    up to its Finished, and holds its own Finished until told (`send_finished_with`): a handshake
    under way for as long as a test likes."""

    def __init__(self, port: int, context: ssl.SSLContext):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        self.sock.sendall(self.outgoing.read())
        while True:
            self.incoming.write(self.sock.recv(65536))
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                continue

    def send_finished_with(self, request: bytes) -> None:
        self.tls.write(request)
        self.sock.sendall(self.outgoing.read())        # Finished + request: one segment

    def answer(self, timeout: float) -> bytes:
        """What comes, decrypted, and how it ended: <closed>, <timeout> or the error's name."""
        self.sock.settimeout(timeout)
        got = b""
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return got + b"<closed>"
                self.incoming.write(data)
                try:
                    while chunk := self.tls.read(65536):
                        got += chunk
                except ssl.SSLWantReadError:
                    continue
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    return got + b"<closed>"
        except TimeoutError:
            return got + b"<timeout>"
        except OSError as exc:
            return got + f"<{type(exc).__name__}>".encode()
        finally:
            self.sock.close()
