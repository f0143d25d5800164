"""Writes held to the end of the loop turn (tunnel.endpoint: send_batched; worker.loop).

A real epoll loop and a real connected socket pair: a held write reaches the peer only once
the turn's events are done, never with EPOLLOUT asked of epoll, and the owner drains it on
the EPOLLOUT the loop hands it, as after a partial send.
"""

from __future__ import annotations

import select
import socket

import pytest

from tunnel.endpoint import HOLD_MAX, Endpoint
from worker.loop import EventLoop


class Owner:
    """What a client connection or an exchange does with its endpoint: drain on EPOLLOUT."""

    def __init__(self, loop: EventLoop, sock: socket.socket):
        self.ep = Endpoint(loop, sock)
        self.events: list[int] = []
        self.ep.register(select.EPOLLIN, self.on_event)

    def on_event(self, mask: int) -> None:
        self.events.append(mask)
        if mask & select.EPOLLOUT and self.ep.out:
            self.ep.flush()


def _peer_has(peer: socket.socket) -> bytes:
    try:
        return peer.recv(1 << 20)
    except BlockingIOError:
        return b""


@pytest.fixture
def pair():
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.setblocking(False)
    loop = EventLoop()
    yield loop, ours, peer
    loop.close()
    ours.close()
    peer.close()


def _one_turn(loop: EventLoop, during) -> None:
    """Run the loop for one turn; `during` runs in it, before the held writes go."""
    def step():
        during()
        loop.running = False
    loop.call_soon(step)
    loop.running = True
    loop.run()


@pytest.mark.timeout(10)
def test_a_held_write_leaves_at_the_end_of_the_turn_without_epollout(pair):
    loop, ours, peer = pair
    owner = Owner(loop, ours)
    owner.ep.send_batched(b"GET / HTTP/1.1\r\n\r\n")
    owner.ep.send_batched(b"and what follows it in the same turn")
    owner.ep.want(True)
    assert owner.ep.mask == select.EPOLLIN, "no EPOLLOUT asked of epoll (no epoll_ctl)"
    seen_in_turn = []
    _one_turn(loop, lambda: seen_in_turn.append(_peer_has(peer)))
    assert seen_in_turn == [b""], "held until the turn's events are done"
    assert _peer_has(peer) == b"GET / HTTP/1.1\r\n\r\nand what follows it in the same turn"
    assert owner.events == [] and owner.ep.out is None and not owner.ep.held, "sent whole: the owner is not called"


@pytest.mark.timeout(10)
def test_a_large_write_and_a_write_behind_pending_bytes_go_at_once(pair):
    loop, ours, peer = pair
    owner = Owner(loop, ours)
    big = b"x" * (HOLD_MAX + 1)
    owner.ep.send_batched(big)
    assert owner.ep.out is None and not loop.held
    received = b""
    while len(received) < len(big):
        received += _peer_has(peer)
    assert received == big


@pytest.mark.timeout(10)
def test_a_held_write_the_socket_takes_only_in_part_is_drained_by_epoll_after(pair):
    loop, ours, peer = pair
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    owner = Owner(loop, ours)
    filler = b"f" * (1 << 20)
    owner.ep.send(filler)                   # the socket takes part; the rest is `out`
    assert owner.ep.out
    owner.ep.send_batched(b"tail")          # behind what is pending: no hold, no reordering
    assert not owner.ep.held and owner.ep.out.endswith(b"tail")
    owner.ep.want(True)
    assert owner.ep.mask == select.EPOLLIN | select.EPOLLOUT
    received = b""
    while len(received) < len(filler) + 4:
        _one_turn(loop, lambda: None)
        received += _peer_has(peer)
        owner.ep.want(True)
    assert received == filler + b"tail"


@pytest.mark.timeout(10)
def test_a_held_write_of_an_endpoint_closed_in_the_same_turn_is_dropped(pair):
    loop, ours, peer = pair
    owner = Owner(loop, ours)
    owner.ep.send_batched(b"never")
    _one_turn(loop, lambda: owner.ep.close())
    assert owner.events == [] and peer.recv(100) == b""     # the close, and nothing before it


@pytest.mark.timeout(10)
def test_a_held_write_the_socket_cannot_take_whole_goes_back_to_its_owner(pair):
    loop, ours, peer = pair
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    while True:                              # a full socket, and nothing kept by the endpoint
        try:
            ours.send(b"f" * 4096)
        except BlockingIOError:
            break
    owner = Owner(loop, ours)
    owner.ep.send_batched(b"a request head")
    _one_turn(loop, lambda: None)
    assert owner.events == [select.EPOLLOUT], "the owner drains it, as after a partial send"
    assert owner.ep.out and not owner.ep.held
    owner.ep.want(True)
    assert owner.ep.mask == select.EPOLLIN | select.EPOLLOUT     # now epoll tells when it can go
    received = b""
    while not received.endswith(b"a request head"):
        received += _peer_has(peer)
        _one_turn(loop, lambda: None)
