"""Shared setup for the repro scripts of review 2026-12-04-certs-fallback (not a repro itself).

Every process started here is stopped by pid (Proxy.stop, backend.close); ports are OS-assigned."""
from __future__ import annotations

import contextlib
import os
import socket
import ssl
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests"))
os.chdir(ROOT)

import trustme  # noqa: E402
from backends import HttpBackend  # noqa: E402
from proxyproc import Proxy  # noqa: E402
from support import free_port  # noqa: E402


def pair(directory, leaf, name):
    cert, key = os.path.join(directory, f"{name}.pem"), os.path.join(directory, f"{name}.key")
    with open(cert, "wb") as f:
        f.write(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(key)
    return cert, key


@contextlib.contextmanager
def mtls_proxy(handler=None, workers=1, extra_listen=(), **sections):
    """A proxy with an mTLS listener (proxy.port), a plain one (proxy.plain_port), a recording
    backend, and a client context holding a certificate the CA signed (CN=alice)."""
    directory = tempfile.mkdtemp(prefix="certs-review-")
    ca = trustme.CA()
    site = pair(directory, ca.issue_cert("localhost"), "site")
    clients = os.path.join(directory, "clients.pem")
    with open(clients, "wb") as f:
        f.write(ca.cert_pem.bytes())
    backend = HttpBackend(handler)
    proxy = Proxy(os.path.join(directory, "proxy"), [{"path": "/", "to": backend.url + "/"}], workers=workers,
                  **sections)
    proxy.plain_port = free_port()
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}",
                               "tls": {"cert": site[0], "key": site[1], "client_ca": clients}},
                              f"127.0.0.1:{proxy.plain_port}", *extra_listen]
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.load_cert_chain(*pair(directory, ca.issue_cert("alice@example.test", common_name="alice"), "client"))
    try:
        proxy.start()
        yield proxy, backend, context, ca, directory, site
    finally:
        try:
            proxy.stop()
        finally:
            backend.close()


def tls_connect(port, context):
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return context.wrap_socket(raw, server_hostname="localhost")


def plain_connect(port):
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def read_response(sock):
    """The whole of one response to a request that said Connection: close."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, ssl.SSLError, OSError):
            break
        if not chunk:
            break
        data += chunk
    return data
