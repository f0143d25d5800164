"""Does a peer resume TLS sessions?  A small client that records it for every connection.

wrk gives S7c its rate but does not say how each handshake went (it offers the session of
the connection before, as OpenSSL's SSL_clear keeps it).  This client does the same, one
connection at a time (`chain`): each one offers the session the previous one ended with,
sends one `GET /small` with `Connection: close`, reads the answer, and records
`session_reused`.  `offer` replays one session saved earlier (for S7c right after a
reload: a session from before it).  Python's `ssl` is OpenSSL's client, like wrk's.
"""

from __future__ import annotations

import socket
import ssl

REQUEST = b"GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def client_context(tls_version: str = "") -> ssl.SSLContext:
    """No verification (a throw-away certificate); `tls_version` "1.2" caps the client at TLS 1.2."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if tls_version == "1.2":
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


def connect(context: ssl.SSLContext, port: int, session=None, timeout: float = 10.0):
    """One connection and request: (resumed, the session to offer next, negotiated version)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    with context.wrap_socket(raw, server_hostname="localhost", session=session) as sock:
        sock.sendall(REQUEST)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        if not data.startswith(b"HTTP/1.1 200"):
            raise OSError(f"answer: {data[:60]!r}")
        return sock.session_reused, sock.session, sock.version()


def chain(context: ssl.SSLContext, port: int, count: int, session=None) -> dict:
    """`count` connections, each offering the session the previous one ended with."""
    resumed, version, errors = 0, "", []
    for _ in range(count):
        try:
            reused, session, version = connect(context, port, session)
        except (OSError, ssl.SSLError) as exc:
            errors.append(str(exc))
            session = None
            continue
        resumed += reused
    return {"resumed": resumed, "tried": count, "version": version, "errors": errors[:3], "session": session}


def offer(context: ssl.SSLContext, port: int, session, count: int) -> int:
    """How many of `count` new connections resume `session` itself."""
    resumed = 0
    for _ in range(count):
        try:
            resumed += connect(context, port, session)[0]
        except (OSError, ssl.SSLError):
            pass
    return resumed
