"""The SSLSocket of an accepted TLS connection (worker.tls `accepted_socket`): made in C by
worker/_accept.c where it is built (the worker's default), in Python otherwise
(MPM_NATIVE_ACCEPT=0), and both the same object `wrap_socket` would make.

The worker's own tests go through the C maker (CI builds it); this file holds both makers to
`wrap_socket` directly, on real socket pairs, with a real handshake and real bytes both ways."""

from __future__ import annotations

import os
import select
import socket
import ssl
import threading

import pytest
import trustme

from conf import tlscontext
from worker import tls


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    cert = trustme.CA().issue_cert("localhost")
    where = tmp_path_factory.mktemp("made")
    cert.private_key_pem.write_to_path(str(where / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(where / "cert.pem"))
    return tlscontext._server_context(str(where / "cert.pem"), str(where / "key.pem"), None, ("http/1.1",))


@pytest.fixture(params=["c", "python"])
def maker(request, monkeypatch):
    if request.param == "c":
        # CI builds worker._accept: the worker makes its SSLSockets there, so this must run.
        assert tls._made_in_c is not None, "worker/_accept.c is not built"
    else:
        monkeypatch.setattr(tls, "_made_in_c", None)
    return request.param


def _talk(server: ssl.SSLSocket, client_end: socket.socket) -> tuple[bytes, bytes]:
    """A TLS client on the other end sends b"ping" and reads the answer; the server end (ours,
    non-blocking) shakes hands, reads it and answers b"pong"."""
    client = ssl.create_default_context()
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    heard = []

    def run_client() -> None:
        with client.wrap_socket(client_end) as sock:
            sock.sendall(b"ping")
            heard.append(sock.recv(16))

    thread = threading.Thread(target=run_client)
    thread.start()
    for step in (server.do_handshake, lambda: server.recv(16)):
        while True:
            try:
                got = step()
                break
            except ssl.SSLWantReadError:        # (read ahead: what it holds comes before epoll's word)
                select.select([server], [], [], 5)
    server.sendall(b"pong")
    thread.join(10)
    return got, heard[0]


@pytest.mark.timeout(30)
def test_an_accepted_socket_is_what_wrap_socket_makes_and_serves_tls(context, maker):
    ours_pair, theirs_pair = socket.socketpair(), socket.socketpair()
    try:
        for end in (ours_pair[0], theirs_pair[0]):
            end.setblocking(False)
        theirs = context.wrap_socket(theirs_pair[0], server_side=True, do_handshake_on_connect=False)
        fd = ours_pair[0].detach()
        ours = tls.accepted_socket(context, fd, socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK, 0)
        assert type(ours) is ssl.SSLSocket and ours.fileno() == fd
        assert vars(ours).keys() == vars(theirs).keys()
        for name in vars(theirs).keys() - {"_sslobj"}:
            assert getattr(ours, name) == getattr(theirs, name), name
        assert type(ours._sslobj) is type(theirs._sslobj) and ours._sslobj.server_side
        assert (ours.gettimeout(), ours._io_refs, ours._closed) == (0.0, 0, False)
        assert ours.context is context
        assert _talk(ours, ours_pair[1]) == (b"ping", b"pong")
        ours.close()
        assert ours.fileno() == -1
        theirs.close()
    finally:
        for end in (*ours_pair, *theirs_pair):
            end.close()


def test_a_descriptor_that_is_no_socket_is_refused_and_closed(context, maker, tmp_path):
    """What CPython refuses (here a file, not a socket) raises OSError, and the descriptor is
    closed: the acceptor counts it as a failed accept and nothing is left open."""
    fd = os.open(tmp_path / "not-a-socket", os.O_CREAT | os.O_RDWR)
    with pytest.raises(OSError):
        tls.accepted_socket(context, fd, socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK, 0)
    with pytest.raises(OSError):
        os.fstat(fd)
