"""Shared harness for the 2026-12-03 TLS review repros: real mpm masters (tests/proxyproc),
an h11 backend in a thread (tests/backends), certificates from trustme.  Every proxy is
stopped by pid at exit."""
from __future__ import annotations

import atexit
import datetime
import os
import socket
import ssl
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

import trustme  # noqa: E402
import worker  # noqa: E402
from backends import HttpBackend  # noqa: E402
from proxyproc import Proxy  # noqa: E402

assert worker.__file__.startswith(ROOT), worker.__file__
TMP = tempfile.mkdtemp(prefix="tlsreview-")
_proxies: list = []


def write(name: str, data: bytes) -> str:
    path = os.path.join(TMP, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def pair(ca, name: str, *hosts, **kw) -> tuple[str, str]:
    leaf = ca.issue_cert(*hosts, **kw)
    return (write(f"{name}.pem", b"".join(p.bytes() for p in leaf.cert_chain_pems)),
            write(f"{name}.key", leaf.private_key_pem.bytes()))


def backend(handler=None) -> HttpBackend:
    return HttpBackend(handler)


def proxy(listen: list | None, routes: list, workers: int = 1, **sections) -> Proxy:
    p = Proxy(os.path.join(TMP, f"proxy{len(_proxies)}"), routes, workers=workers, **sections)
    if listen is not None:        # None: the plain listener Proxy makes
        p.config["listen"] = [dict(item, address=item.get("address") or f"127.0.0.1:{p.port}") for item in listen]
    _proxies.append(p)
    return p.start()


@atexit.register
def _stop() -> None:
    for p in _proxies:
        p.stop()


def client_context(ca, version=None, cert=None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if version is not None:
        context.minimum_version = context.maximum_version = version
    if cert is not None:
        context.load_cert_chain(*cert)
    return context


def get(port: int, context: ssl.SSLContext, sni: str, host: str | None = None, session=None, path="/"):
    """(status line or error, session_reused, session, response bytes)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        with context.wrap_socket(raw, server_hostname=sni, session=session) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host or sni}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while True:
                try:
                    chunk = sock.recv(65536)
                except (ssl.SSLError, OSError) as exc:
                    return f"error after {len(data)} bytes: {exc}", sock.session_reused, sock.session, data
                if not chunk:
                    break
                data += chunk
            return data.split(b"\r\n", 1)[0].decode(), sock.session_reused, sock.session, data
    except (ssl.SSLError, OSError) as exc:
        return f"error: {exc}", False, None, b""


def expired(ca, name: str, *hosts):
    past = datetime.datetime(2020, 1, 1)
    return pair(ca, name, *hosts, not_before=past, not_after=past + datetime.timedelta(days=1))
