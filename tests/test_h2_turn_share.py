"""One HTTP/2 connection frames at most its share of a loop turn (worker.h2.outflow
FRAMED_PER_TURN); its other streams' backends are read in the next turns (review
2026-12-04-h2-bounds #1: 95 downloads on one connection framed ~24 MiB a turn, and the worker's
other clients waited 0.14-0.72 s a request).  What this checks is that a deferred read is never
lost: many large downloads at once, from a plain backend (epoll reports it again) and from a TLS
one (whose decrypted bytes epoll does not see: the read is asked for in the next turn), all
arrive whole.  The latency it buys is measured by the review's repro, not here."""

from __future__ import annotations

import hashlib

import pytest
import trustme
from h2client import H2Client
from proxyproc import Proxy
from rawbackend import RawBackend, respond
from support import cert_files
from test_pool_isolation import TlsServer, _read_head

SIZE = 3 * 1024 * 1024
STREAMS = 12


def _body(target: bytes) -> bytes:
    seed = hashlib.sha256(target).digest()
    return (seed * (SIZE // len(seed) + 1))[:SIZE]


class TlsBulk(TlsServer):
    def serve(self, conn, index):
        while head := _read_head(conn):
            conn.sendall(respond(200, _body(head.split(b" ")[1])))


def _plain(conn) -> None:
    while (head := conn.read_head()) is not None:
        conn.send(respond(200, _body(head.target.encode())))


@pytest.mark.timeout(90)
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_many_large_downloads_on_one_connection_all_arrive_whole(tmp_path, scheme):
    if scheme == "https":
        cert, key = cert_files(trustme.CA(), tmp_path, "127.0.0.1")
        backend = TlsBulk(cert, key)
        route = {"path": "/", "to": f"https://127.0.0.1:{backend.port}/", "tls": {"verify": False}}
    else:
        backend = RawBackend(_plain)
        route = {"path": "/", "to": backend.url + "/"}
    proxy = Proxy(tmp_path / "proxy", [route], workers=1)
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"}]
    proxy.start()
    try:
        client = H2Client(proxy.port, settings={0x4: 2 ** 31 - 1})
        streams = {client.request("GET", f"/bulk/{i}"): f"/bulk/{i}" for i in range(STREAMS)}
        for stream_id, path in streams.items():
            stream = client.response(stream_id, timeout=60)
            assert stream.status == 200 and stream.reset is None, (path, stream.status, stream.reset)
            assert bytes(stream.body) == _body(path.encode()), (path, len(stream.body))
        client.close()
    finally:
        proxy.stop()
        backend.close()
