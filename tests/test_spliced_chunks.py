"""A read-until-close body spliced to an HTTP/1.1 client, one chunk per read
(worker.bodies._splice_chunk), with real sockets and the worker's real pipe.

The end-to-end tests (test_http_forwarding) pass through the usual turns; this one sets up
the turn that is hard to reach from outside: a client socket with no room left when a read's
size line is due, so the size line, the data still in the pipe and the CRLF must queue, in
that order, in the endpoint's `out`.
"""

from __future__ import annotations

import os
import socket

import pytest

from tunnel import pipes
from tunnel.endpoint import Endpoint
from worker import bodies
from worker.loop import EventLoop


@pytest.fixture
def full_client():
    """(endpoint, peer socket): the endpoint's socket cannot take one more byte."""
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    while True:
        try:
            ours.send(b"f" * 1024)
        except BlockingIOError:
            break
    loop = EventLoop()
    yield Endpoint(loop, ours), peer
    loop.close()
    ours.close()
    peer.close()


@pytest.mark.timeout(10)
def test_a_chunk_whose_size_line_finds_no_room_queues_whole_and_in_order(full_client):
    endpoint, _ = full_client
    pipe = pipes.SHARED_PIPE
    if not pipe.size:
        pipe.open()
    data = b"spliced data " * 100
    assert os.write(pipe.w, data) == len(data)
    framed = bodies._splice_chunk(endpoint, len(data))
    assert endpoint.out == b"%x\r\n" % len(data) + data + b"\r\n"
    assert framed == len(endpoint.out)
    with pytest.raises(BlockingIOError):
        os.read(pipe.r, 1)                  # the pipe gave everything back: it is empty for the next use
