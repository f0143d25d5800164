"""Does a peer resume TLS sessions?  A small client that records it for every connection.

wrk gives S7c its rate but does not say how each handshake went (it offers the session of
the connection before, as OpenSSL's SSL_clear keeps it).  This client does the same, one
connection at a time (`chain`): each one offers the session the previous one ended with,
sends one `GET /small` with `Connection: close`, reads the answer, and records
`session_reused`.  `offer` replays one session saved earlier (for S7c right after a
reload: a session from before it).  Python's `ssl` is OpenSSL's client, like wrk's.
"""

from __future__ import annotations

import os
import socket
import ssl
import tempfile
import time

from bench import procs

RESUME_CHECKS = 40          # connections of the resumption check after each TLS-handshake cell
RELOAD_SETTLE = 2.0         # seconds from a reload signal to the first connection measured after it
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


# -- what a TLS-handshake cell (bench.scenarios.http_cell) does besides running wrk --------------------

def tls_port(peer, sc) -> int:
    return peer.site.tls_port_ec if sc.cert == "ec" else peer.site.tls_port


def wrk_env(tls_version: str) -> dict | None:
    """wrk (OpenSSL's client) capped at TLS 1.2 through an OpenSSL config file, or None."""
    if tls_version != "1.2":
        return None
    path = os.path.join(tempfile.gettempdir(), f"mpm-bench-tls12-{os.getpid()}.cnf")
    with open(path, "w") as f:
        f.write("openssl_conf = conf\n[conf]\nssl_conf = ssl\n[ssl]\nsystem_default = sys\n"
                "[sys]\nMaxProtocol = TLSv1.2\n")
    return {**procs.child_env(), "OPENSSL_CONF": path}


def before(sc, peer) -> dict:
    """S7c right after a reload: sessions from before it, the reload, and how many still resume."""
    if not sc.reload_first or peer.reload_signal is None:
        return {}
    context = client_context(sc.tls_version)
    port = tls_port(peer, sc)
    session = chain(context, port, 2)["session"]
    peer.reload()
    time.sleep(RELOAD_SETTLE)
    resumed = offer(context, port, session, RESUME_CHECKS)
    return {"resumed_after_reload_pct": 100.0 * resumed / RESUME_CHECKS}


def after(sc, peer) -> dict:
    """The resumption check: RESUME_CHECKS connections, each offering the last one's session."""
    got = chain(client_context(sc.tls_version), tls_port(peer, sc), RESUME_CHECKS + 1)
    out = {"resumed_pct": 100.0 * got["resumed"] / RESUME_CHECKS, "tls_version": got["version"]}
    if got["errors"]:
        out["notes"] = [f"resumption check: {e}" for e in got["errors"]]
    return out


def server_resumed(before: tuple | None, after: tuple | None) -> dict:
    """What the peer itself counted during wrk's run (mpm: `mpmctl status`)."""
    if before is None or after is None:
        return {}
    full, resumed = after[0] - before[0], after[1] - before[1]
    if full < 0 or resumed < 0 or full + resumed == 0:      # a worker left the table in between
        return {}
    return {"server_resumed_pct": 100.0 * resumed / (full + resumed)}
