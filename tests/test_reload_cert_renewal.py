"""A certificate renewed while a reload is under way: the reload is either applied whole or
refused whole (FILE:LINE, the old generation serving on), never half.

The master checks a listener's certificate when it reads the configuration (conf.loader: the
file opened twice) and loads it again into the TLS context before it forks the next
generation.  A renewal that lands between the two (certbot's hooks rewrite files while an
operator or a timer reloads) used to fail the reload after the master had taken the new
configuration: "the reload failed", the old workers serving under a master whose config,
balancers, admin listener and listeners were already the new ones.  Now the contexts are
built while the reload validates, and such a reload is refused like any other.

The renewal here is timed by inotify: it replaces the file (by rename, as certbot's symlinks
move) with a certificate of another key right after the master's second read of it, the
fourth in all (`mpmctl reload` reads the configuration first, to find the control socket).
"""

from __future__ import annotations

import ctypes
import os
import select
import socket
import ssl
import struct
import threading

import pytest
import trustme

IN_CLOSE_NOWRITE = 0x10
ATTEMPTS = 8
_libc = ctypes.CDLL(None, use_errno=True)


def _pem_pair(leaf) -> tuple[bytes, bytes]:
    return b"".join(pem.bytes() for pem in leaf.cert_chain_pems), leaf.private_key_pem.bytes()


def _get(port: int, ca: trustme.CA) -> bytes:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    return data.split(b"\r\n", 1)[0]


class Renewal(threading.Thread):
    """Replaces `path` with `bad` (None: removes it) once something has read it `after` times
    (inotify on its directory: a close without writing, under its name)."""

    def __init__(self, path: str, bad: bytes | None, after: int = 4):
        super().__init__(daemon=True)
        self.path, self.bad, self.after = path, bad, after
        self.fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0, os.strerror(ctypes.get_errno())
        assert _libc.inotify_add_watch(self.fd, os.path.dirname(path).encode(), IN_CLOSE_NOWRITE) >= 0
        self.replaced = threading.Event()

    def run(self) -> None:
        name, reads = os.path.basename(self.path).encode(), 0
        try:
            while reads < self.after:
                if not select.select([self.fd], [], [], 30)[0]:
                    return
                data = os.read(self.fd, 65536)
                while data:
                    _, mask, _, size = struct.unpack_from("iIII", data)
                    if data[16:16 + size].rstrip(b"\0") == name and mask & IN_CLOSE_NOWRITE:
                        reads += 1
                    data = data[16 + size:]
            if self.bad is None:      # removed (an rm + cp renewal, caught between the two)
                os.unlink(self.path)
            else:
                with open(f"{self.path}.new", "wb") as f:
                    f.write(self.bad)
                os.replace(f"{self.path}.new", self.path)
            self.replaced.set()
        finally:
            os.close(self.fd)


@pytest.mark.timeout(120)
def test_a_certificate_renewed_between_the_check_and_the_fork_refuses_the_reload(proxy_factory, http_backend,
                                                                                tmp_path):
    ca = trustme.CA()
    good_cert, key = _pem_pair(ca.issue_cert("localhost"))
    other_cert, _ = _pem_pair(ca.issue_cert("localhost"))      # another key: does not match `key`
    cert_path, key_path = tmp_path / "site.pem", tmp_path / "site.key"
    cert_path.write_bytes(good_cert)
    key_path.write_bytes(key)
    proxy = proxy_factory([{"path": "/", "to": http_backend().url + "/"}], start=False, workers=1)
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}",
                               "tls": {"cert": str(cert_path), "key": str(key_path)}}]
    proxy.start()
    assert _get(proxy.port, ca).startswith(b"HTTP/1.1 200")
    # The thread reacts to the second read while the master goes on: it may land after the
    # third (the reload then simply applies).  Tried until one lands in between.
    applied, late_refusals = 0, []
    for _ in range(ATTEMPTS):
        renewal = Renewal(str(cert_path), other_cert)
        renewal.start()
        result = proxy.reload()
        renewal.join(30)
        assert renewal.replaced.is_set()
        if result.returncode == 0:
            applied += 1
            proxy.wait_ready(generation=1 + applied)
        else:
            # Not the loader's own check (that read the good file): the context's.
            assert "cannot load listen.tls's files" in result.stderr, result.stderr
            late_refusals.append(result.stderr.strip())
        cert_path.write_bytes(good_cert)
        assert _get(proxy.port, ca).startswith(b"HTTP/1.1 200")
        if late_refusals:
            break
    errors = proxy.error_text()
    assert "reload failed" not in errors, errors[-3000:]
    # A certificate that fails to load says nothing about the session-ticket keys: they stay shared.
    assert "resume only within a generation" not in errors, errors[-3000:]
    assert late_refusals, f"the renewal never landed between the check and the fork in {ATTEMPTS} reloads"
    message = late_refusals[0]
    assert message == (f"{proxy.config_path}:2: cannot load listen.tls's files: certificate and key do not "
                       f"match: '{cert_path}' and '{key_path}'"), message
    status = proxy.status()
    assert status["generation"] == 1 + applied, "a refused reload forks no generation"
    assert proxy.reload().returncode == 0, "the file is good again"
    proxy.wait_ready(generation=2 + applied)
    assert _get(proxy.port, ca).startswith(b"HTTP/1.1 200")


@pytest.mark.timeout(120)
def test_a_client_ca_removed_while_its_context_is_made_refuses_the_reload(proxy_factory, http_backend, tmp_path):
    """The client-CA file is read once more after OpenSSL loaded it (its digest names the
    listener's sessions): gone by then, the reload is refused like a certificate's, and the
    session-ticket keys stay shared (an OSError there was taken for OpenSSL out of reach)."""
    ca = trustme.CA()
    cert, key = _pem_pair(ca.issue_cert("localhost"))
    paths = {name: tmp_path / name for name in ("site.pem", "site.key", "clients.pem")}
    paths["site.pem"].write_bytes(cert)
    paths["site.key"].write_bytes(key)
    paths["clients.pem"].write_bytes(ca.cert_pem.bytes())
    proxy = proxy_factory([{"path": "/", "to": http_backend().url + "/"}], start=False, workers=1)
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}",
                               "tls": {"cert": str(paths["site.pem"]), "key": str(paths["site.key"]),
                                       "client_ca": str(paths["clients.pem"])}}]
    proxy.start()
    refused = None
    for _ in range(ATTEMPTS):
        # mpmctl's and the master's checks read it twice each; OpenSSL's load is the fifth read.
        renewal = Renewal(str(paths["clients.pem"]), None, after=5)
        renewal.start()
        result = proxy.reload()
        renewal.join(30)
        paths["clients.pem"].write_bytes(ca.cert_pem.bytes())
        if result.returncode != 0:
            refused = result.stderr.strip()
            break
    errors = proxy.error_text()
    assert "reload failed" not in errors and "resume only within a generation" not in errors, errors[-3000:]
    assert refused is not None, f"the removal never landed between the load and the digest in {ATTEMPTS} reloads"
    assert f"{proxy.config_path}:2: cannot load listen.tls's files: " in refused and "clients.pem" in refused, refused
    assert proxy.reload().returncode == 0
