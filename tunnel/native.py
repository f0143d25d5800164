"""Plain tunnels relayed in C (tunnel/_relay.c): what a `Tunnel` becomes once both its sides
are plain sockets, where the extension was built.

Why: a 64-byte WebSocket message through `Tunnel._splice` cost 7.5 µs of user time (the loop's
dispatch, the handler, two `os.splice` calls, the counters) against nginx's 2.9, and the CPU per
message was 1.25x nginx's (bench/RESULTS-2026-12-03-night.md).  The relay's sockets sit in the
worker loop's epoll, and once the process has a relay, the loop's turn is the relay's `turn`: it
relays their events in C where it finds them, hands the others to their Python handlers, and
closes the tunnels that ended.  The rules are tunnel.tunnel's (it
stays the reference: TLS tunnels, and MPM_NATIVE_RELAY=0): back-pressure, half-close, hang-ups
of a paused side, errors, and bulk bytes spliced through one pipe.

The idle timeout is not pushed per message: the tunnel's deadline comes due, and only then is
the relay asked when the last traffic was.  Closing and detaching (a hand-over) take the
leftovers, EOFs and counts back from the relay, so what follows is tunnel.tunnel's code.
"""

from __future__ import annotations

from tunnel._relay import Relay
from tunnel.tunnel import Tunnel


def hand_to_relay(tunnel: Tunnel) -> None:
    """From now on the C relay moves `tunnel`'s bytes: its endpoints' sockets are registered
    again in the loop's epoll as the relay's (tagged), with what each holds for its peer, and
    its idle clock (the time of its last traffic: a tunnel handed over from another process
    keeps what it had used).  Where epoll refuses a socket, tunnel.tunnel relays it."""
    relay = relay_of(tunnel.loop)
    client, backend = tunnel.client, tunnel.backend
    client.unregister()
    backend.unregister()
    try:
        tunnel.slot = relay.add(tunnel, client.fd, backend.fd, tunnel.client_eof, tunnel.backend_eof,
                                client.out or b"", backend.out or b"", tunnel.deadline - tunnel.idle_timeout)
    except OSError:         # epoll refused a descriptor (its watch limit): the Python path relays it
        tunnel._update_interest()
        return
    tunnel.relay = relay
    client.out = backend.out = None
    tunnel.__class__ = NativeTunnel


def relay_of(loop) -> Relay:
    """The process's relay (made when its worker starts, after the fork): its tunnels' sockets
    join the loop's epoll, and the loop's turns are the relay's (tunnel/_relay_turn.c)."""
    if loop.relay is None:
        loop.relay = Relay(loop.fileno())
    return loop.relay


_BYTES_IN, _BYTES_OUT = Tunnel.bytes_in, Tunnel.bytes_out      # the slots, under the properties below


class NativeTunnel(Tunnel):
    """A plain tunnel whose bytes the relay moves: its counts are the relay's on top of what
    came before (early bytes, a predecessor's), read live (the scoreboard and the balancer
    read them while it is open)."""

    __slots__ = ()

    @property
    def bytes_in(self) -> int:
        base = _BYTES_IN.__get__(self)
        return base + self.relay.counts(self.slot)[0] if self.slot is not None else base

    @property
    def bytes_out(self) -> int:
        base = _BYTES_OUT.__get__(self)
        return base + self.relay.counts(self.slot)[1] if self.slot is not None else base

    def _take_back(self) -> None:
        """Out of the relay: its leftovers, EOFs and counts are ours again, and its idle clock
        (the deadline is not pushed per message here: a hand-over computes the time left from
        it, and a tunnel that streamed for longer than its timeout went to the next generation
        with none left, and closed there at once)."""
        relay, slot = self.relay, self.slot
        self.deadline = max(self.deadline, relay.last_active(slot) + self.idle_timeout)
        to_client, to_backend, client_eof, backend_eof, moved_in, moved_out = relay.remove(slot)
        self.slot = None
        self.client.out, self.backend.out = to_client or None, to_backend or None
        self.client_eof, self.backend_eof = bool(client_eof), bool(backend_eof)
        _BYTES_IN.__set__(self, _BYTES_IN.__get__(self) + moved_in)
        _BYTES_OUT.__set__(self, _BYTES_OUT.__get__(self) + moved_out)

    def on_deadline(self) -> None:
        if self.slot is not None:
            last = self.relay.last_active(self.slot)
            if self.loop.now - last < self.idle_timeout:
                self.deadline = last + self.idle_timeout
                return
        self.close("idle timeout")

    def close(self, reason: str) -> None:
        if not self.closed and self.slot is not None:
            self._take_back()
        super().close(reason)

    def detach(self) -> dict:
        if self.slot is not None:
            self._take_back()
        return super().detach()
