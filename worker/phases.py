"""The phases of an exchange (worker.exchange), and the transitions between them: `NEXT`
is the one table `Exchange.enter` checks every change against (the drawing is in
worker.exchange's docstring); and the states of a client connection (worker.client)."""

from __future__ import annotations

# The phases, as plain ints: an IntEnum's attribute access and hash go through Python code
# on 3.11 (EnumType.__getattr__, Enum.__hash__), which cost more than the rest of a transition.
PHASES = ("ROUTING", "CONNECTING", "WAITING", "RELAYING", "FLUSHING", "DONE", "TUNNEL")
ROUTING = 0      # the head is being routed (no backend yet)
CONNECTING = 1   # backend connect or TLS handshake under way; the request waits in conn.out
WAITING = 2      # request sent (its body may still stream): waiting for the response head
RELAYING = 3     # the response head went to the client; the body streams
FLUSHING = 4     # the response is complete here; the client has yet to take the rest
DONE = 5         # delivered or given up on, and logged
TUNNEL = 6       # 101: both endpoints belong to a tunnel (logged when it ends)

# NEXT[phase]: the phases it may change to (CONNECTING again: a failover; WAITING again: a
# failover onto a pooled connection).
NEXT = (
    frozenset({CONNECTING, WAITING, FLUSHING, DONE}),                        # ROUTING
    frozenset({CONNECTING, WAITING, FLUSHING, DONE}),                        # CONNECTING
    frozenset({CONNECTING, WAITING, RELAYING, FLUSHING, TUNNEL, DONE}),      # WAITING
    frozenset({FLUSHING, DONE}),                                             # RELAYING
    frozenset({DONE}),                                                       # FLUSHING
    frozenset(),                                                             # DONE
    frozenset(),                                                             # TUNNEL
)


# The states, as plain ints (see worker.exchange: an IntEnum costs more than the transition).
IDLE = 0     # between requests, nothing received
HEAD = 1     # a request head is owed and part of it (or nothing yet, on a new connection) received
BUSY = 2     # an exchange is under way
CLOSED = 3   # closed, or handed to a tunnel
