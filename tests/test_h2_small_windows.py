"""A client that opens the connection's flow-control window a byte at a time (review
2026-12-04-h2-bounds #2).  Each 1-byte WINDOW_UPDATE let one 1-byte DATA frame go, and every
DATA frame refilled the WINDOW_UPDATE budget by two: a client that waited for each frame before
its next update was never stopped, and held 40-70 % of a core with 20 KB/s (nginx: 5-7 %).
Now DATA under 1 KiB earns nothing, so such a client spends the budget down and gets GOAWAY
ENHANCE_YOUR_CALM; a client that reads normally (tests/test_h2_requests.py: a 2 MiB body read
with the window given back per frame, h2load) never comes near it."""

from __future__ import annotations

import time

import pytest
from h2raw import RawClient, h2c_proxy
from hyperframe.frame import WindowUpdateFrame
from rawbackend import respond

ENHANCE_YOUR_CALM = 0xB
BODY = 4 << 20


def _big(conn) -> None:
    while (head := conn.read_head()) is not None:
        conn.read_body(head)
        conn.send(respond(200, b"x" * BODY))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    with h2c_proxy(tmp_path_factory.mktemp("h2windows"), _big) as env:
        yield env


@pytest.mark.timeout(60)
def test_a_window_opened_a_byte_at_a_time_spends_the_update_budget(env):
    proxy, _ = env
    # Streams may take everything; the connection's window (65,535, not ours to change) is what
    # the client doles out, one byte per update, each sent once the byte before it has come.
    client = RawClient(proxy.port, settings={0x4: 2 ** 31 - 1}, ack_data=False)
    client.get(1, "/big")
    client.wait(lambda: client.received.get(1, 0) >= 65_535)
    updates = 0
    deadline = time.monotonic() + 30
    while client.goaway is None and not client.closed and time.monotonic() < deadline:
        got = client.received[1]
        client.send(WindowUpdateFrame(0, window_increment=1))
        updates += 1
        try:
            client.wait(lambda got=got: client.received[1] > got or client.goaway is not None, timeout=5)
        except AssertionError:
            break                                       # closed, the GOAWAY read with it
    assert client.goaway == ENHANCE_YOUR_CALM, (updates, client.goaway, client.closed)
    # The budget's burst (500) and a few seconds of its rate, not an unbounded run.
    assert updates < 5_000, updates
    client.sock.close()
