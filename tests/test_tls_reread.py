"""TLS files re-read at a reload (review 2026-12-03-tls): what a reload changes in a CA file
must change what the next generation trusts, for backends and for clients alike, even when
the file keeps its path.

- A backend CA (`tls.ca` of an https member): the master's health checks build the same
  client contexts as the workers, and the workers are forked from the master, so a context
  the master kept across the reload would have carried the old CA into both.
- A listener's `client_ca`: a session a client resumes was authenticated when it began; a
  session from before the reload must not resume once the CA it was checked against is gone.
"""

from __future__ import annotations

import os
import socket
import ssl
import sys

import pytest
import trustme
from support import wait_for

sys.path.insert(0, os.path.dirname(__file__))
from test_tls import TlsBackend  # noqa: E402  (the stdlib HTTPS server those tests use)

VERSIONS = (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2)


def _write_pair(tmp_path, leaf, name: str) -> tuple[str, str]:
    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    return str(cert), str(key)


def _status_line(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    return data.split(b"\r\n", 1)[0]


@pytest.mark.timeout(60)
def test_a_backend_ca_file_rewritten_in_place_is_trusted_after_a_reload(proxy_factory, tmp_path):
    old_ca, new_ca = trustme.CA(), trustme.CA()
    backend = TlsBackend(_write_pair(tmp_path, old_ca.issue_cert("127.0.0.1"), "old"))
    ca_file = tmp_path / "backend-ca.pem"
    ca_file.write_bytes(old_ca.cert_pem.bytes())
    health = {"method": "GET", "path": "/", "interval": 0.2, "passes": 1, "fails": 1, "timeout": 2}
    members = [{"url": f"https://127.0.0.1:{backend.port}", "tls": {"ca": str(ca_file)}}]
    proxy = proxy_factory([{"path": "/", "to": "balancer://cluster/"}], workers=1,
                          balancers={"cluster": {"members": members, "health": health}})
    try:
        wait_for(lambda: backend.served >= 2, 10, 0.05, "health checks")
        assert _status_line(proxy.port) == b"HTTP/1.1 200 OK"
        # The backend moves to a certificate from the new CA; the operator writes that CA over
        # the old one, at the same path, and reloads.
        moved = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        moved.load_cert_chain(*_write_pair(tmp_path, new_ca.issue_cert("127.0.0.1"), "new"))
        backend.context = moved
        ca_file.write_bytes(new_ca.cert_pem.bytes())
        assert proxy.reload().returncode == 0
        proxy.wait_ready(generation=2)
        served = backend.served
        wait_for(lambda: backend.served >= served + 3, 10, 0.05, "health checks under the new CA")
        assert [_status_line(proxy.port) for _ in range(3)] == [b"HTTP/1.1 200 OK"] * 3
        assert "CERTIFICATE_VERIFY_FAILED" not in proxy.error_text().split("reloaded")[-1]
    finally:
        backend.close()


def _resumes(port: int, context: ssl.SSLContext, session) -> bool | str:
    """Whether a new connection offering `session` resumed it (and was answered), or why it failed."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        with context.wrap_socket(raw, server_hostname="localhost", session=session) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
            assert data.startswith(b"HTTP/1.1 200"), data[:80]
            return sock.session_reused
    except (ssl.SSLError, OSError) as exc:      # TLS 1.3 reports a refused certificate after the handshake
        return str(exc)


def _session(port: int, context: ssl.SSLContext) -> ssl.SSLSession:
    """A session from one full exchange (TLS 1.3 tickets come after the handshake)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with context.wrap_socket(raw, server_hostname="localhost") as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        while sock.recv(4096):
            pass
        return sock.session


@pytest.mark.timeout(60)
def test_sessions_checked_against_a_client_ca_that_a_reload_removed_do_not_resume(proxy_factory, http_backend,
                                                                                  tmp_path):
    old_ca, new_ca = trustme.CA(), trustme.CA()
    cert, key = _write_pair(tmp_path, old_ca.issue_cert("localhost"), "site")
    client_ca = tmp_path / "clients.pem"
    client_ca.write_bytes(old_ca.cert_pem.bytes())
    proxy = proxy_factory([{"path": "/", "to": http_backend().url + "/"}], start=False, workers=1)
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}",
                               "tls": {"cert": cert, "key": key, "client_ca": str(client_ca)}}]
    proxy.start()
    client_files = _write_pair(tmp_path, old_ca.issue_cert("client@example.test"), "client")
    contexts, sessions = {}, {}
    for version in VERSIONS:
        context = contexts[version] = ssl.create_default_context()
        old_ca.configure_trust(context)
        context.load_cert_chain(*client_files)
        context.minimum_version = context.maximum_version = version
        first = _session(proxy.port, context)
        assert _resumes(proxy.port, context, first) is True, version    # they do resume
        sessions[version] = _session(proxy.port, context)
    # The operator replaces the client CA (the old one is compromised) at the same path.
    client_ca.write_bytes(new_ca.cert_pem.bytes())
    assert proxy.reload().returncode == 0
    proxy.wait_ready(generation=2)
    for version, context in contexts.items():
        assert "unknown ca" in str(_resumes(proxy.port, context, None)).lower(), version   # a fresh handshake fails
        result = _resumes(proxy.port, context, sessions[version])
        assert result is not True and "unknown ca" in result.lower(), (version, result)
