"""Message bodies on their way through: the request body to the backend, the response
body to the client, one read's worth per readiness event.

Between two plain sockets, body data the framing need not look at (the rest of a
Content-Length body, the inside of a chunk, a read-until-close body) moves with two
`os.splice` calls through the worker's pipe, as tunnels do (`tunnel.pipes`): the bytes
never enter Python.  A read-until-close body re-chunked for an HTTP/1.1 client is spliced
too, each read one chunk with its size line and CRLF sent around it.  Anything else (TLS on
either side, chunk-size lines, de-chunking for an HTTP/1.0 client, a short remainder) is
read into the shared buffer, scanned by the framing, and sent.  Either way a part the sink
did not take becomes its `out`, and the direction stops reading until that has drained.
"""

from __future__ import annotations

import os
import ssl
from functools import partial

from conf.readahead import buffered
from tunnel import pipes, tunnel
from tunnel.buffer import SHARED_BUFFER, SHARED_BUFFER_SIZE, SHARED_VIEW
from tunnel.endpoint import EPOLLIN, WOULD_BLOCK
from worker.framing import BadFraming
from worker.response import send_to_client

SPLICE_MIN = 16 * 1024     # shorter remainders go through the buffer: two syscalls either way
# What one read of a body gives the framing to scan beyond the chunk data it skips: chunk-size
# lines cost a Python call each, and 256 KiB of 1-byte chunks took ~0.1 s in one loop turn,
# while every other connection of the worker waited (review 2026-12-03-http1 #3, for request
# bodies).  16 KiB is ~3 ms at worst; nginx reads bodies in 8-16 KiB buffers.  Responses too:
# a backend streaming 1-byte chunks (an app flushing every byte) held a worker's other
# clients 198-338 ms a request (review 2026-12-04-backends #2).  Content-Length and
# close-delimited bodies have nothing to scan: their reads stay whole.
SCAN_PER_READ = 16 * 1024
# One read of a response for an HTTP/2 stream: what it keeps when the client's windows or socket
# hold it back, so 100 streams of a connection kept up to 25 MiB with 256 KiB reads, about nginx's
# 5 MiB with these (review 2026-12-04-h2-bounds #4).  Its DATA frames are 16 KiB: four a read.
H2_READ = 64 * 1024
_PIPE = pipes.SHARED_PIPE
_FLAGS = pipes.SPLICE_FLAGS


def _read_size(framing) -> int:
    """How much one read of a body may take: the data `framing` skips, and SCAN_PER_READ more."""
    size = framing.opaque() + SCAN_PER_READ
    return framing.wanted(size if size < SHARED_BUFFER_SIZE else SHARED_BUFFER_SIZE)


def _splice_in(source_fd: int, count: int) -> int:
    """Up to `count` bytes from a socket into the pipe: how many, or 0 when the buffer
    path must decide (nothing there, EOF or TCP urgent data: recv tells them apart)."""
    if not tunnel.splicing():
        return 0
    pipe = _PIPE
    if not pipe.size:
        try:
            pipe.open()
        except OSError:      # out of fds: this read goes through the buffer
            return 0
    try:
        return os.splice(source_fd, pipe.w, min(count, pipe.size), None, None, _FLAGS)
    except WOULD_BLOCK:
        return 0
    except OSError as exc:
        if tunnel.splice_error(exc):
            return 0
        raise


def _splice_out(sink, n: int) -> None:
    """The `n` bytes in the pipe to `sink`; what it does not take becomes `sink.out`.
    Raises OSError (the pipe is then dropped: it may hold stray bytes)."""
    pipe = _PIPE
    try:
        sent = os.splice(pipe.r, sink.fd, n, None, None, _FLAGS)
    except WOULD_BLOCK:
        sent = 0
    except OSError:
        pipe.discard()
        raise
    if sent < n:
        sink.out = pipe.read_out(n - sent)


def _splice_chunk(sink, n: int) -> int:
    """The `n` bytes in the pipe to `sink` as one chunk (framing.RechunkedCloseFraming): its
    size line, the data spliced, its CRLF; what the sink does not take queues in order in
    `sink.out`.  Returns the bytes framed.  Raises OSError (the pipe is then dropped)."""
    size_line = b"%x\r\n" % n
    try:
        sink.send(size_line)
    except OSError:
        _PIPE.discard()
        raise
    if sink.out:                   # the size line did not go whole: the data waits behind it
        sink.out += _PIPE.read_out(n)
    else:
        _splice_out(sink, n)
    sink.send(b"\r\n")            # behind what `out` holds, if anything
    return len(size_line) + n + 2


def _spliceable(source, sink, framing) -> int:
    """How many of the next body bytes may be spliced (0: use the buffer).  An HTTP/2
    stream as the client side has no socket (fd -1): its bytes become DATA frames."""
    if source.tls or sink.tls or sink.out or sink.fd < 0 or (framing.reframes and not framing.splices_chunks):
        return 0
    count = framing.opaque()
    return count if count >= SPLICE_MIN else 0


# == the response body, backend -> client ===================================================
def relay_response(ex) -> bool:
    """One read of the response body, relayed; False when it waits for the next loop turn: an
    HTTP/2 client's connection has framed its share of this one (worker.h2.outflow
    FRAMED_PER_TURN), and epoll reports the backend again (what a TLS backend holds decrypted
    epoll does not see: that read is asked for in the next turn)."""
    if ex.client.http2 and ex.client.conn.turn_spent():
        if ex.conn.tls and buffered(ex.conn.sock):
            ex.loop.call_soon(partial(ex.on_backend_event, EPOLLIN))
        return False
    conn, client_ep, framing = ex.conn, ex.client.ep, ex.resp_framing
    count = _spliceable(conn, client_ep, framing)
    n = 0
    if count:
        try:
            n = _splice_in(conn.fd, count)
        except OSError as exc:
            _response_cut(ex, f"backend reset the connection: {exc.strerror or exc}")
            return True
    if n:
        ex.client.deadline = ex.loop.now + ex.route.timeout
        stop = framing.feed(None, 0, n)
        try:
            if framing.splices_chunks:
                ex.sent += _splice_chunk(client_ep, n)
            else:
                ex.sent += n
                _splice_out(client_ep, n)
        except OSError:
            ex.client.close()
            return True
        if stop >= 0 and conn.holds_more():
            # The body ended exactly where the splice did: bytes after it were not read (the
            # buffer path reads one past the end to see them, framing.LengthFraming.wanted).
            ex.reusable = False
    else:
        stop = _read_response(ex, conn, framing)
        if stop == -2:
            return True
    if stop >= 0:
        ex.response_read()
    else:
        ex.update_interest()
    return True


def _read_response(ex, conn, framing) -> int:
    """The buffer path: -1 (more to come), the end offset (the body ended), -2 (handled)."""
    wanted = _read_size(framing)
    if wanted > H2_READ and ex.client.http2:
        wanted = H2_READ
    try:
        n = conn.sock.recv_into(SHARED_VIEW, wanted)
    except WOULD_BLOCK:
        return -1
    except ssl.SSLEOFError:        # a TLS backend's FIN without close_notify (worker.backend)
        _response_cut(ex, "backend closed the connection without close_notify")
        return -2
    except OSError as exc:
        _response_cut(ex, f"backend reset the connection: {exc.strerror or exc}")
        return -2
    if n == 0:
        if not framing.close_delimited:
            _response_cut(ex, "backend closed the connection")
            return -2
        ex.reusable = False             # read-until-close: EOF is the end
        return 0 if not framing.last_chunk or send_to_client(ex, framing.last_chunk) else -2
    ex.client.deadline = ex.loop.now + ex.route.timeout
    try:
        stop = framing.feed(SHARED_BUFFER, 0, n)
    except BadFraming as exc:
        _response_cut(ex, f"invalid response body: {exc}")
        return -2
    if stop >= 0:
        if stop < n:
            ex.reusable = False    # bytes after the body: not a connection to reuse
        elif n == wanted and conn.holds_more():
            ex.reusable = False    # the body ended where a full read did: bytes may wait behind it
        n = stop
    data = framing.data_of(SHARED_VIEW) if framing.reframes else SHARED_VIEW[:n]
    return stop if send_to_client(ex, data) else -2


def _response_cut(ex, why: str) -> None:
    """The backend failed mid-body: the client can only be told by closing."""
    ex.worker.log_error("error", f"route {ex.route.name} backend {ex.origin.name}: {why} (response cut)")
    ex.client.close()


# == the request body, client -> backend ===================================================
def scan_request(ex, buf, start: int, stop: int) -> int:
    """Feed request body bytes to the exchange's framing: where the body ends in `buf`
    (`stop` if it goes on), or -1 after answering a framing error or LimitRequestBody."""
    framing = ex.req_framing
    try:
        end = framing.feed(buf, start, stop)
    except BadFraming as exc:
        ex.answer(400, str(exc))
        return -1
    limit = ex.worker.limits.request_body
    if limit and framing.over(limit):
        ex.answer(413, "request body larger than LimitRequestBody")
        return -1
    if end >= 0:
        ex.req_framing = None
        return end
    return stop


def relay_request(ex) -> None:
    client, conn, framing = ex.client, ex.conn, ex.req_framing
    count = _spliceable(client.ep, conn, framing)
    n = 0
    if count:
        try:
            n = _splice_in(client.ep.fd, count)
        except OSError:
            client.close()
            return
    if n:
        framing.feed(None, 0, n)
        limit = ex.worker.limits.request_body
        if limit and framing.over(limit):
            # The n bytes are in the worker's pipe: left there, they would lead the next
            # body spliced out of it, another client's (pipes.Pipe.discard).
            _PIPE.discard()
            ex.answer(413, "request body larger than LimitRequestBody")
            return
        if framing.finished:
            ex.req_framing = None
        ex.received += n
        try:
            _splice_out(conn, n)
        except OSError as exc:
            ex.request_cut(f"send failed: {exc.strerror or exc}")
            return
        _sent_on(ex)
    elif not _read_request(ex, client, conn):
        return
    ex.update_interest()


def _sent_on(ex) -> None:
    """Request body bytes went to the backend: its timeout counts from the last of them, as
    ProxyTimeout and nginx's proxy_send_timeout count between two writes.  (From the request
    head on, an upload slower than the route's timeout got a 504 while every byte flowed.)"""
    ex.client.deadline = ex.loop.now + ex.route.timeout


def _read_request(ex, client, conn) -> bool:
    """The buffer path; False when the exchange was answered, the client closed or the
    backend stopped taking the body."""
    framing = ex.req_framing
    try:
        n = client.ep.sock.recv_into(SHARED_VIEW, _read_size(framing))
    except WOULD_BLOCK:
        return True
    except OSError:
        n = 0
    if n == 0:           # mid-body: nothing more will come, nothing to answer
        client.close()
        return False
    stop = scan_request(ex, SHARED_BUFFER, 0, n)
    if stop < 0:
        return False
    if stop < n:         # the next pipelined request
        client.inbuf += SHARED_VIEW[stop:n]
    ex.received += stop
    try:
        conn.send(SHARED_VIEW[:stop])
    except OSError as exc:
        ex.request_cut(f"send failed: {exc.strerror or exc}")
        return False
    _sent_on(ex)
    return True


def push_request(ex, data) -> None:
    """Request body bytes a client side hands over itself instead of the exchange reading
    them from a socket: an HTTP/2 stream, from its DATA frames, when `want(True)` asked for
    them (worker.h2.stream).  Scanned by the framing, counted, sent to the backend."""
    stop = scan_request(ex, data, 0, len(data))
    if stop < 0:
        return
    ex.received += stop
    try:
        ex.conn.send(data if stop == len(data) else data[:stop])
    except OSError as exc:
        ex.request_cut(f"send failed: {exc.strerror or exc}")
        return
    _sent_on(ex)
    ex.update_interest()
