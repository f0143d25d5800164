"""A worker told to stop while a handed-over connection is still arriving (its first record
in, the rest of its bytes to come) keeps it, instead of exiting with it.

A connection whose read-ahead bytes fill several hand-over records (here a 100 KB head still
arriving) is answered `A` (taken) at its first record: the sender lets go of its sockets.
If the receiver's own graceful stop came before the last record (two reloads close
together), it counted no connection yet, so it exited at once, or at the end of that loop
turn once the item was complete: the connection closed with nothing said (review
2026-12-03-handover #5).  Now a worker does not end while an item is on its way to it.

The stop is made to come at that moment by a `sitecustomize.py` on the workers' PYTHONPATH:
in the second generation, the first record of a connection whose bytes are still due calls
the worker's `graceful_stop` (as its SIGTERM would).  The product is not changed."""

from __future__ import annotations

import socket

import pytest
from rawbackend import RawBackend, respond
from rawsock import http_response_body, read_head, status_of
from support import wait_for
from test_head_in_pieces import _proxy_read_all

SITECUSTOMIZE = '''
import os


def _arm():
    if not os.path.exists(os.environ["STOP_MID_ITEM"]):
        return
    from worker.handover import _Inbound
    record = _Inbound._record

    def stop_mid_item(self, message, fds):
        record(self, message, fds)
        if message[:1] == b"C" and self.pending is not None and not self.worker.stopping:
            self.worker.graceful_stop()
    _Inbound._record = stop_mid_item


os.register_at_fork(after_in_child=_arm)
'''


@pytest.fixture
def backend():
    server = RawBackend(lambda conn: [conn.send(respond(200, head.target.encode()))
                                      for head in iter(conn.read_head, None)])
    yield server
    server.close()


@pytest.mark.timeout(60)
def test_a_connection_arriving_in_several_records_survives_a_stop_in_between(proxy_factory, backend, tmp_path):
    (tmp_path / "inject").mkdir()
    (tmp_path / "inject" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    trigger = tmp_path / "stop-mid-item"
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1, timeouts={"client_header": 30},
                          environ={"PYTHONPATH": str(tmp_path / "inject"), "STOP_MID_ITEM": str(trigger)})
    [old] = proxy.worker_pids()
    head = b"GET /big HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-H%d: %s\r\n" % (n, b"v" * 4000) for n in range(25))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=15) as sock:
        sock.sendall(head[:-100])
        wait_for(lambda: _proxy_read_all(sock, proxy.port), 5, 0.01, "the old worker to read it")   # read-ahead bytes
        trigger.write_text("")
        result = proxy.reload()
        assert result.returncode == 0, result.stdout + result.stderr
        wait_for(lambda: old not in proxy.worker_pids(current_only=False), 15, 0.05, "the old worker to hand over")
        sock.sendall(head[-100:] + b"\r\n")
        try:
            answer, buf = read_head(sock)
            answer = (status_of(answer), http_response_body(sock, answer, buf))
        except OSError as exc:
            answer = repr(exc)
    assert answer == (200, b"/big"), f"a connection handed over in several records got {answer!r}"
