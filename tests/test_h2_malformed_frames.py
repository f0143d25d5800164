"""Malformed HTTP/2 requests that the `h2` library takes for connection errors are stream errors
here (RFC 9113 §8.1.1, RFC 7540 §5.3.1), as nginx makes them: the offending stream is reset
with PROTOCOL_ERROR and every other stream of the connection goes on (review
2026-12-04-h2-downgrade #3: each of these ended the connection, a request in flight lost).

The client is written with hyperframe and hpack alone, frame by frame, because h2's own
client machine would not send these frames, nor accept a reset of a stream it never opened."""

from __future__ import annotations

import time

import pytest
from h2raw import RawClient, h2c_proxy
from hyperframe.frame import DataFrame, PriorityFrame
from rawbackend import respond

PROTOCOL_ERROR = 1


def _app(conn) -> None:
    while True:
        head = conn.read_head()
        if head is None:
            return
        conn.read_body(head)
        if head.target.startswith("/slow"):
            time.sleep(1.0)
        conn.send(respond(200, head.target.encode()))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    with h2c_proxy(tmp_path_factory.mktemp("h2malformed"), _app) as env:
        yield env


@pytest.mark.timeout(60)
def test_four_malformed_requests_reset_their_stream_and_the_others_go_on(env):
    proxy, backend = env
    client = RawClient(proxy.port)
    client.get(1, "/slow-innocent")                       # in flight while the bad frames come
    # a) trailers without END_STREAM
    client.headers(3, [(":method", "POST"), (":scheme", "http"), (":authority", "proxy.test"),
                       (":path", "/upload")], end_stream=False)
    client.send(DataFrame(3, b"abc"))
    client.headers(3, [("x-trailer", "1")], end_stream=False)
    # b) a request naming :status (an "informational" block to h2)
    client.headers(5, [(":status", "100")], end_stream=False)
    # c) HEADERS whose priority makes the stream depend on itself
    client.get(7, "/self-dependent", depends_on=7)
    # d) a PRIORITY frame making a stream under way depend on itself, and one for an idle stream
    client.get(9, "/slow-reprioritised")
    time.sleep(0.3)                                       # its request is at the backend
    client.send(PriorityFrame(9, depends_on=9, stream_weight=15))
    client.send(PriorityFrame(101, depends_on=101, stream_weight=15))
    client.get(11, "/after")
    client.wait(lambda: 1 in client.statuses and 11 in client.statuses and len(client.resets) >= 5)
    assert client.statuses == {1: 200, 11: 200}
    assert client.resets == {3: PROTOCOL_ERROR, 5: PROTOCOL_ERROR, 7: PROTOCOL_ERROR, 9: PROTOCOL_ERROR,
                             101: PROTOCOL_ERROR}
    assert client.goaway is None
    targets = [head.target for head in backend.requests]
    assert "/self-dependent" not in targets               # refused before it was forwarded
    errors = proxy.error_text()
    assert "HTTP/2 connection error" not in errors
    for why in ("trailers without END_STREAM", "a :status field in a request", "a stream that depends on itself"):
        assert f"malformed request: {why}" in errors, why
    client.get(13, "/still-fine")                         # the connection serves on
    client.wait(lambda: 13 in client.statuses)
    assert client.statuses[13] == 200
    client.sock.close()
