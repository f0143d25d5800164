"""What the tests of worker.newcomer share: a new TLS connection that the lane takes as a
Newcomer (it follows a whole exchange on another connection, so an idle backend connection
waits in the pool), a backend with a few shapes of response, and reads that say how they ended."""

from __future__ import annotations

import re
import ssl
import time

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
