"""TLS session resumption (issue #20): a client that saves its session and offers it again
resumes it on another worker, after a reload, after `mpmctl upgrade`, under a rotated key
and with the operator's key files, for TLS 1.3 and TLS 1.2 alike.

Each client here is Python's `ssl` (OpenSSL's client): `SSLSocket.session` after the
response (TLS 1.3 tickets come after the handshake), offered back with `session=`, and
`session_reused` on the new connection says whether the proxy took it.
"""

from __future__ import annotations

import os
import socket
import ssl
import time

import psutil
import pytest
import trustme
from support import wait_for

VERSIONS = (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2)


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


class Client:
    """One client context per TLS version (a session is only offered by the context it came from)."""

    def __init__(self, ca, port: int):
        self.port = port
        self.contexts = {}
        for version in VERSIONS:
            context = ssl.create_default_context()
            ca.configure_trust(context)
            context.minimum_version = context.maximum_version = version
            self.contexts[version] = context

    def get(self, version, session=None) -> tuple[bool, ssl.SSLSession]:
        """One request on a new connection: (whether it resumed `session`, the session to offer next)."""
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        with self.contexts[version].wrap_socket(raw, server_hostname="localhost", session=session) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            assert data.startswith(b"HTTP/1.1 200"), data[:100]
            return sock.session_reused, sock.session


def _tls_proxy(proxy_factory, http_backend, tmp_path, ca, workers=2, callback="C", **sections):
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_path, key_path = tmp_path / "site.pem", tmp_path / "site.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    if callback == "C":
        try:
            import conf._tickets  # noqa: F401
        except ImportError:
            pytest.skip("conf._tickets was not built (no C compiler at install): the Python callback serves")
    environ = {"MPM_TICKETS_IN_PYTHON": "1"} if callback == "Python" else {}
    proxy = proxy_factory([{"path": "/", "to": http_backend().url + "/"}], start=False, workers=workers,
                          log={"access": "off"}, environ=environ, **sections)
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}",
                               "tls": {"cert": str(cert_path), "key": str(key_path)}}]
    return proxy.start()


def _counts(proxy, generation=None) -> dict:
    """Resumed handshakes per worker pid (the scoreboard is written every 0.5 s)."""
    time.sleep(0.6)
    return {w["pid"]: w["tls_resumed"] for w in proxy.status()["workers"]
            if generation is None or w["generation"] == generation}


def _sessions(client) -> dict:
    return {version: client.get(version)[1] for version in VERSIONS}


# The ticket callback in C (conf/_tickets.c) and in Python (its reference, where nothing was
# compiled): both must resume, rotate and renew alike.
CALLBACKS = ("C", "Python")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("callback", CALLBACKS)
def test_a_session_resumes_on_both_workers(proxy_factory, http_backend, tmp_path, ca, callback):
    proxy = _tls_proxy(proxy_factory, http_backend, tmp_path, ca, callback=callback)
    client = Client(ca, proxy.port)
    for version, session in _sessions(client).items():
        # SO_REUSEPORT spreads connections by their source port: 12 land on both workers
        # (all on one: 1 in 2,000), and every one resumes the session the first one got.
        assert [client.get(version, session)[0] for _ in range(12)] == [True] * 12, version
    counts = _counts(proxy)
    assert len(counts) == 2 and all(n > 0 for n in counts.values()), counts
    # A TLS 1.3 resumption comes with a fresh ticket (clients use each one once), as with
    # OpenSSL's own key; its arrival also acknowledges the client's Finished at once.
    session = _sessions(client)[ssl.TLSVersion.TLSv1_3]
    started = time.monotonic()
    for _ in range(5):
        reused, fresh = client.get(ssl.TLSVersion.TLSv1_3, session)
        assert reused and fresh.id != session.id
        session = fresh
    assert time.monotonic() - started < 2.0       # not 5 x 40 ms of delayed ACK and more
    status = wait_for(lambda: (lambda s: s if (s["totals"]["tls_resumed"], s["totals"]["tls_full"]) == (29, 4)
                                         else None)(proxy.status()), 5, 0.1, "the scoreboard to count them all")
    assert status["tls"]["ticket_keys"] == "shared" and status["tls"]["source"] == "generated"
    assert status["tls"]["ticket_callback"] == callback
    text = proxy.mpmctl("status").stdout
    assert "88% of 33 handshakes resumed" in text and "TLS FULL" in text


@pytest.mark.timeout(60)
def test_sessions_survive_a_reload(proxy_factory, http_backend, tmp_path, ca):
    proxy = _tls_proxy(proxy_factory, http_backend, tmp_path, ca)
    client = Client(ca, proxy.port)
    before = _sessions(client)
    assert proxy.reload().returncode == 0
    proxy.wait_ready(generation=2)
    for version, session in before.items():
        assert [client.get(version, session)[0] for _ in range(4)] == [True] * 4, version
    assert sum(_counts(proxy, generation=2).values()) == 8
    # The status line counts since the master started: the first generation's two full
    # handshakes too, once its workers are gone (their scoreboard columns with them).
    wait_for(lambda: all(w["generation"] == 2 for w in proxy.status()["workers"]), 10, 0.1, "generation 1 gone")
    assert proxy.status()["tls"]["handshakes"] == {"full": 2, "resumed": 8, "failed": 0}
    assert "80% of 10 handshakes resumed" in proxy.mpmctl("status").stdout


@pytest.mark.timeout(90)
def test_sessions_survive_an_upgrade_to_the_next_master(proxy_factory, http_backend, tmp_path, ca):
    proxy = _tls_proxy(proxy_factory, http_backend, tmp_path, ca)
    client = Client(ca, proxy.port)
    before = _sessions(client)
    result = proxy.mpmctl("upgrade", timeout=60)
    assert result.returncode == 0, result.stderr + result.stdout
    new_master = int(open(os.path.join(proxy.dir, "run", "mpm.pid")).read())
    try:
        assert proxy.proc.wait(10) == 0 and new_master != proxy.proc.pid
        for version, session in before.items():
            assert [client.get(version, session)[0] for _ in range(4)] == [True] * 4, version
        status = proxy.status()
        assert status["master_pid"] == new_master and status["tls"]["rotations"] == 0
    finally:
        proxy.mpmctl("stop")
        wait_for(lambda: not psutil.pid_exists(new_master), 20, 0.1, "the new master to stop")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("callback", CALLBACKS)
def test_a_rotated_key_still_resumes_for_one_period_then_not(proxy_factory, http_backend, tmp_path, ca, callback):
    period = 2.0
    proxy = _tls_proxy(proxy_factory, http_backend, tmp_path, ca, callback=callback,
                       tls={"ticket_key_rotation": period})
    client = Client(ca, proxy.port)

    def rotations() -> int:
        return proxy.status()["tls"]["rotations"]

    first = rotations()
    wait_for(lambda: rotations() > first, period + 3, 0.05, "a rotation")   # a fresh period starts now
    issued = rotations()
    before = _sessions(client)
    wait_for(lambda: rotations() == issued + 1, period + 3, 0.05, "the next rotation")
    for version, session in before.items():       # issued under the previous key: still good
        assert client.get(version, session)[0], version
    wait_for(lambda: rotations() >= issued + 2, period + 3, 0.05, "one more rotation")
    for version, session in before.items():       # that key is gone now: a full handshake
        assert not client.get(version, session)[0], version
    assert proxy.status()["tls"]["keys"] == 2


@pytest.mark.timeout(90)
def test_the_operators_key_file_serves_every_worker_and_generation(proxy_factory, http_backend, tmp_path, ca):
    key_file = tmp_path / "ticket.key"
    key_file.write_bytes(os.urandom(80))
    proxy = _tls_proxy(proxy_factory, http_backend, tmp_path, ca,
                       tls={"session_ticket_key": str(key_file), "ticket_key_rotation": 1})
    client = Client(ca, proxy.port)
    before = _sessions(client)
    time.sleep(1.5)                               # no rotation of the operator's key
    assert proxy.reload().returncode == 0
    proxy.wait_ready(generation=2)
    for version, session in before.items():
        assert [client.get(version, session)[0] for _ in range(8)] == [True] * 8, version
    counts = _counts(proxy, generation=2)
    assert len(counts) == 2 and all(n > 0 for n in counts.values()), counts
    status = proxy.status()["tls"]
    assert (status["source"], status["keys"], status["rotations"]) == ("file", 1, 0)
    # A second proxy started from the same file (nothing shared but the file) resumes them too.
    other = _tls_proxy(proxy_factory, http_backend, tmp_path, ca, tls={"session_ticket_key": str(key_file)})
    elsewhere = Client(ca, other.port)
    elsewhere.contexts = client.contexts
    for version, session in before.items():
        assert elsewhere.get(version, session)[0], version


@pytest.mark.timeout(30)
def test_a_bad_key_file_is_a_config_error_with_its_line(proxy_factory, tmp_path):
    short = tmp_path / "short.key"
    short.write_bytes(os.urandom(32))
    proxy = proxy_factory([{"path": "/", "to": "http://127.0.0.1:9/"}], start=False,
                          tls={"ticket_key_rotation": -1, "session_ticket_key": [str(short), str(tmp_path / "none")],
                               "ciphersuites": "TLS_NO_SUCH_SUITE"})
    proxy.write_config()
    result = proxy.mpmctl("configtest")
    assert result.returncode == 1
    lines = result.stdout.splitlines() + result.stderr.splitlines()
    assert any("tls.ticket_key_rotation" in line and "a number >= 0" in line for line in lines), lines
    assert any("must hold 48 or 80 bytes" in line and ":" in line.split(" ")[0] for line in lines), lines
    assert any("cannot read" in line for line in lines), lines
    assert any("tls.ciphersuites" in line and "TLS_NO_SUCH_SUITE" in line for line in lines), lines


@pytest.mark.timeout(30)
def test_tls13_prefers_aes128_gcm_unless_told_otherwise(proxy_factory, http_backend, tmp_path, ca):
    """AES-128-GCM-SHA256 first (Mozilla's order): its SHA-256 key schedule is the cheaper one."""
    ours = _tls_proxy(proxy_factory, http_backend, tmp_path, ca, workers=1)
    told = _tls_proxy(proxy_factory, http_backend, tmp_path, ca, workers=1,
                      tls={"ciphersuites": "TLS_CHACHA20_POLY1305_SHA256"})
    for proxy, suite in ((ours, "TLS_AES_128_GCM_SHA256"), (told, "TLS_CHACHA20_POLY1305_SHA256")):
        context = ssl.create_default_context()
        ca.configure_trust(context)
        raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        with context.wrap_socket(raw, server_hostname="localhost") as sock:
            assert sock.cipher()[0] == suite


def test_sessions_resume_for_the_session_timeout_and_no_longer(proxy_factory, http_backend, tmp_path, ca):
    """`tls.session_timeout` (nginx's ssl_session_timeout; 300 s by default, as in nginx, Apache
    and HAProxy, where OpenSSL's own is 7200): a session resumes within it and not after, so it
    does not carry a client certificate's verdict for two hours.  TLS 1.3 tells the client the
    lifetime in the ticket (the client then stops offering it); a TLS 1.2 client offers its
    ticket regardless, so the refusal there is the proxy's own."""
    proxy = _tls_proxy(proxy_factory, http_backend, tmp_path, ca, workers=1, tls={"session_timeout": 2})
    client = Client(ca, proxy.port)
    first = _sessions(client)
    assert first[ssl.TLSVersion.TLSv1_3].ticket_lifetime_hint == 2
    for version in VERSIONS:
        assert client.get(version, first[version])[0], f"{version.name} resumes within the timeout"
    time.sleep(3.2)           # ages are whole seconds, and OpenSSL's client rounds its own down
    for version in VERSIONS:
        assert not client.get(version, first[version])[0], f"{version.name} resumed after the timeout"


def test_the_session_timeout_is_300_seconds_unless_set(proxy_factory, http_backend, tmp_path, ca):
    proxy = _tls_proxy(proxy_factory, http_backend, tmp_path, ca, workers=1)
    assert _sessions(Client(ca, proxy.port))[ssl.TLSVersion.TLSv1_3].ticket_lifetime_hint == 300


@pytest.mark.timeout(120)
def test_a_failed_upgrade_leaves_the_old_masters_ticket_keys(proxy_factory, http_backend, tmp_path, ca):
    """Review 2026-12-03-upgrade #1: the new master wrote its configuration's key file into the
    shared key table as it started, before it had bound anything; failing then (a port another
    program holds), it left the old master serving with those keys, and every ticket issued
    before stopped resuming.  The keys change at the hand-over now, and only then."""
    proxy = _tls_proxy(proxy_factory, http_backend, tmp_path, ca, workers=1)
    client = Client(ca, proxy.port)
    before = _sessions(client)
    key_file = tmp_path / "ticket.key"
    key_file.write_bytes(os.urandom(80))
    listen = proxy.config["listen"]
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    try:
        proxy.config["listen"] = [*listen, f"127.0.0.1:{blocker.getsockname()[1]}"]
        proxy.config["tls"] = {"session_ticket_key": str(key_file)}
        proxy.write_config()
        failed = proxy.mpmctl("upgrade", timeout=60)
        assert failed.returncode != 0 and proxy.proc.poll() is None, failed
        assert proxy.status()["tls"]["source"] == "generated"
        for version, session in before.items():
            assert client.get(version, session)[0], version
    finally:
        blocker.close()
    proxy.config["listen"] = listen
    proxy.write_config()
    result = proxy.mpmctl("upgrade", timeout=60)
    assert result.returncode == 0, result.stderr + result.stdout
    new_master = int(open(os.path.join(proxy.dir, "run", "mpm.pid")).read())
    try:
        # Taken at the hand-over, which the new master sees on its next pass after `mpmctl
        # upgrade` has returned (the control socket was renamed to its own by then).
        wait_for(lambda: proxy.status()["tls"]["source"] == "file", 5, 0.05, "the key file at the hand-over")
    finally:
        proxy.mpmctl("stop")
        wait_for(lambda: not psutil.pid_exists(new_master), 20, 0.1, "the new master to stop")
