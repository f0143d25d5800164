"""What an `Exchange` needs from its client side: one HTTP/1.1 connection or one HTTP/2 stream.

`worker.client.ClientConnection` is a socket that carries one request after another;
`worker.h2.stream.H2Stream` is a stream of an HTTP/2 connection that carries one.  The
exchange (and `worker.response`, `worker.bodies`, `worker.logs`) treat both alike through
the attributes and methods below; where the two differ by nature, the HTTP/2 side gets the
parsed head or our own answer instead of HTTP/1.1 bytes (`http2` True), and pushes request
body bytes instead of having them read from its socket.  Nothing here runs: it is the
contract, for readers and type checkers.
"""

from __future__ import annotations

from typing import Protocol


class ClientEndpoint(Protocol):
    """`client.ep`: where response bytes go (tunnel.endpoint.Endpoint for a socket)."""

    out: bytes | None        # bytes accepted but not taken yet: the exchange stops reading its backend
    tls: bool                # bytes may hide in the TLS object (then `conf.readahead.buffered` is asked)
    fd: int                  # -1: no socket to splice into (an HTTP/2 stream)

    def send(self, data) -> None: ...           # take what fits now, keep the rest in `out`

    def want(self, reading: bool) -> None: ...  # does the exchange take request body bytes now?


class ClientSide(Protocol):
    worker: object
    loop: object
    client_ip: bytes
    xff_line: bytes          # b"X-Forwarded-For: ip\r\n", built once per connection
    proto_line: bytes        # b"X-Forwarded-Proto: http(s)\r\n"
    head_writer: object      # rewrite.request_head, or clientcert.IdentityHead: one per connection
    deadline: float          # the exchange sets it per phase; the loop's sweep calls on_deadline
    inbuf: bytes             # bytes read past the head (HTTP/1.1 pipelining; b"" for a stream)
    eof: bool                # the client closed its sending side (HTTP/1.1 only)
    ep: ClientEndpoint
    http2: bool              # False: HTTP/1.1 bytes go to `ep`; True: the hooks below are used

    def exchange_done(self, exchange, keep_alive: bool) -> None: ...   # logged; next request or end
    def close(self) -> None: ...            # give up: the exchange is aborted (a stream: RST_STREAM)
    def handed_over(self) -> None: ...      # HTTP/1.1: the socket now belongs to a tunnel
    def read_pending(self) -> None: ...     # HTTP/1.1 over TLS: read what the SSL object holds

    # -- HTTP/2 only (`http2` True) ------------------------------------------------------------
    def send_response(self, exchange, resp, reverse, body: bytes, ended: bool) -> None: ...
    def send_interim(self, resp) -> bool: ...                       # 1xx
    def answer(self, exchange, status: int, message: str, extra: bytes = b"") -> bool: ...  # our own; True: all framed
    def switch_protocols(self, exchange, resp, rest: bytes) -> None: ...   # RFC 8441: 101 -> 200
