"""Review 2026-12-06-handshake: handshakes that end every way, on the Newcomer path (the lane's C
runs the rounds: an idle backend connection waits in the pool) against the ServerHandshake
path (MPM_NATIVE_LANE_TLS=0): the same "TLS handshake failed: <why>" lines in the same order,
the same counters (tls_full, tls_resumed, tls_failures, connections) and the same outcome at
the client, TLS 1.2 and 1.3, with and without a required client certificate."""

from __future__ import annotations

import os
import re
import socket
import ssl
import struct
import time

import pytest
import trustme
from newcomerutil import echo
from proxyproc import Proxy
from rawbackend import RawBackend
from support import free_port
from test_tls_handshake_failures import CLOSE_NOTIFY, PARTIAL_HELLO, _client_hello

pytestmark = pytest.mark.timeout(180)


def _pair(directory, cert, name):
    paths = str(directory / f"{name}.pem"), str(directory / f"{name}.key")
    cert.cert_chain_pems[0].write_to_path(paths[0])
    cert.private_key_pem.write_to_path(paths[1])
    return paths


def _outcome(port: int, context, target: str, session=None, server_hostname="localhost"):
    """(what the client saw, its session)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname=server_hostname, session=session) as sock:
            sock.sendall(f"GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
            got = b""
            try:
                while chunk := sock.recv(65536):
                    got += chunk
            except (ssl.SSLError, OSError) as exc:
                got += f"<{type(exc).__name__}>".encode()
            head = got.split(b"\r\n", 1)[0].decode()
            return f"{head} {got.endswith(target.encode())} resumed={sock.session_reused}", sock.session
    except (ssl.SSLError, OSError) as exc:
        return f"<{type(exc).__name__}: {getattr(exc, 'reason', '')}>", None


def _raw(port: int, data: bytes, pause: float = 0.3, reset: bool = False) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        time.sleep(pause)
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return "reset"
        sock.settimeout(3)
        got = b""
        try:
            while chunk := sock.recv(65536):
                got += chunk
            return f"closed after {len(got) > 0}"
        except TimeoutError:
            return "open"
        except OSError as exc:
            return f"<{type(exc).__name__}>"


def _reasons(proxy) -> list[str]:
    return re.findall(r"TLS handshake failed: (.*)", proxy.error_text())


def _run(directory, ca, tls_lane: str) -> dict:
    os.makedirs(directory, exist_ok=True)
    backend = RawBackend(echo)
    site = _pair(directory, ca.issue_cert("localhost", "127.0.0.1"), "site")
    (directory / "clients.pem").write_bytes(ca.cert_pem.bytes())
    proxy = Proxy(directory, [{"path": "/", "to": backend.url + "/"}], workers=1,
                  environ={"MPM_NATIVE_LANE_TLS": tls_lane},
                  timeouts={"handshake": 5, "client_header": 5, "keepalive": 60})
    mtls_port = free_port()
    proxy.config["listen"] = [
        {"address": f"127.0.0.1:{proxy.port}", "tls": {"cert": site[0], "key": site[1]}},
        {"address": f"127.0.0.1:{mtls_port}", "tls": {"cert": site[0], "key": site[1],
                                                       "client_ca": str(directory / "clients.pem")}}]
    proxy.start()
    got: dict = {}
    try:
        trusting = ssl.create_default_context()
        ca.configure_trust(trusting)
        tls12 = ssl.create_default_context()
        ca.configure_trust(tls12)
        tls12.maximum_version = ssl.TLSVersion.TLSv1_2
        with_cert = ssl.create_default_context()
        ca.configure_trust(with_cert)
        with_cert.load_cert_chain(*_pair(directory, ca.issue_cert("client@example.test"), "client"))
        stranger_ca = trustme.CA()
        with_stranger = ssl.create_default_context()
        ca.configure_trust(with_stranger)
        with_stranger.load_cert_chain(*_pair(directory, stranger_ca.issue_cert("x@example.test"), "stranger"))
        untrusting = ssl.create_default_context()         # trusts nothing of ours

        got["warm"], _ = _outcome(proxy.port, trusting, "/warm")
        got["warm mtls"], _ = _outcome(mtls_port, with_cert, "/warm-mtls")
        time.sleep(0.2)
        steps = []

        def step(name, action):
            before = len(_reasons(proxy))
            steps.append((name, action()))
            time.sleep(0.3)
            steps.append((name + " logged", _reasons(proxy)[before:]))

        step("plain http", lambda: _raw(proxy.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"))
        step("reset", lambda: _raw(proxy.port, PARTIAL_HELLO, reset=True))
        step("eof mid hello", lambda: _raw(proxy.port, PARTIAL_HELLO, pause=0.0) and "sent")
        step("close_notify", lambda: _raw(proxy.port, _client_hello() + CLOSE_NOTIFY, pause=0.5))
        step("client rejects cert", lambda: _outcome(proxy.port, untrusting, "/x")[0])
        step("tls13 full", lambda: _outcome(proxy.port, trusting, "/t13")[0])
        s12 = {}

        def full12():
            outcome, s12["session"] = _outcome(proxy.port, tls12, "/t12")
            return outcome
        step("tls12 full", full12)
        step("tls12 resumed", lambda: _outcome(proxy.port, tls12, "/t12r", session=s12["session"])[0])
        step("mtls no cert", lambda: _outcome(mtls_port, trusting, "/m0")[0])
        step("mtls stranger", lambda: _outcome(mtls_port, with_stranger, "/m1")[0])
        step("mtls ok", lambda: _outcome(mtls_port, with_cert, "/m2")[0])
        step("mtls tls12 no cert", lambda: _outcome(mtls_port, tls12, "/m3")[0])
        got["steps"] = steps
        time.sleep(0.5)
        status = proxy.status()
        worker = status["workers"][0]
        got["counts"] = {key: worker[key] for key in ("tls_full", "tls_resumed", "tls_failures")}
        got["connections"] = status["totals"]["connections"]
        got["access"] = sorted(re.sub(r"\[[^]]*\]", "[t]", re.sub(r'" \d+ "', '" D "', line))
                               .replace(str(backend.port), "P").replace(str(mtls_port), "M")
                               for line in proxy.access_lines())
        assert "Traceback" not in proxy.error_text()
        return got
    finally:
        proxy.stop()
        backend.close()



def test_handshake_endings_match_the_serverhandshake_path(tmp_path, ca):
    python = _run(tmp_path / "python", ca, "0")
    lane = _run(tmp_path / "lane", ca, "1")
    for (name, a), (_, b) in zip(python["steps"], lane["steps"], strict=True):
        assert a == b, f"{name}: ServerHandshake path {a!r}, Newcomer path {b!r}"
    assert lane == python
