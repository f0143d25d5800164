"""The response head: read from the backend, checked, rewritten, relayed to the client.

The first read of a response usually holds its whole head and, for a small response,
its whole body: then the head is parsed straight from the worker's shared buffer and
head and body leave in one send.  Interim 1xx heads are relayed (not to an HTTP/1.0
client) and the reading goes on; a 101 the route allows turns the exchange into a tunnel.
"""

from __future__ import annotations

import ssl

from tunnel.buffer import SHARED_BUFFER, SHARED_VIEW
from tunnel.endpoint import WOULD_BLOCK
from worker import upgrade
from worker.framing import BadFraming
from worker.headreader import HeadReader
from worker.http1 import HEAD_END, HttpError, chunked_only, connection_tokens, parse_response
from worker.linger import cork
from worker.rewrite import response_head, stated_proto_line

MAX_RESPONSE_HEAD = 64 * 1024   # a backend head larger than this is invalid (502)
# Interim (1xx) heads relayed per exchange; past them, 502.  A backend sending 103s without end
# held the exchange for ever (each read moves its deadline) and, to a client not reading,
# piled them up in the worker (review 2026-12-04-backends #1).  Apache's AP_MAX_INTERIM_RESPONSES.
MAX_INTERIM = 10
_CHUNKED_LINE = b"Transfer-Encoding: chunked\r\n"
FIRST_READ = 16 * 1024          # the read that looks for the head; the rest of a body may be spliced
# (S2, 64 KiB responses: 1.0 against 1.1 ms of proxy CPU per MiB with a 64 KiB first read)


def read_head(ex) -> None:
    """The backend is readable while the exchange waits for the response head."""
    conn = ex.conn
    try:
        n = conn.sock.recv_into(SHARED_VIEW, FIRST_READ)
    except WOULD_BLOCK:
        return
    except ssl.SSLEOFError:       # a TLS backend's FIN without close_notify: before a head, a close
        n = 0
    except OSError as exc:
        ex.backend_lost(f"backend reset the connection: {exc.strerror or exc}", ex.request_copy)
        return
    if n == 0:
        ex.backend_lost("backend closed the connection", ex.request_copy)
        return
    ex.client.deadline = ex.loop.now + ex.route.timeout
    if ex.respbuf is None:
        process(ex, SHARED_BUFFER, n)
    else:
        ex.respbuf += SHARED_VIEW[:n]
        process(ex, ex.respbuf, len(ex.respbuf))


def process(ex, buf, size: int) -> None:
    """Heads in buf[:size]: 1xx relayed, then the final one (or a 101) acted on."""
    while True:
        end = buf.find(HEAD_END, 0, size)
        try:
            if end < 0 or end + 4 > MAX_RESPONSE_HEAD:
                if (size if end < 0 else end + 4) > MAX_RESPONSE_HEAD:
                    raise HttpError(502, "response head too large")
                if buf is SHARED_BUFFER:
                    ex.respbuf = buf = bytearray(SHARED_VIEW[:size])
                if ex.reader is None:
                    ex.reader = HeadReader(False)
                ex.reader.feed(buf)       # reject garbage now, not at the timeout
                return
            head_size = end + 4
            if ex.reader is None:         # the usual case: the whole head in one read
                resp = parse_response(bytes(buf[:head_size]))
            else:
                ex.reader.feed(buf, end)
                resp = ex.reader.head(bytes(buf[:head_size]))
        except HttpError as exc:
            ex.backend_failed(502, f"invalid response: {exc.message}")
            return
        ex.reader = None
        if resp.status >= 200 or resp.status == 101:
            break
        interims = getattr(ex, "interims", 0) + 1       # (set only here: no store per exchange)
        if interims > MAX_INTERIM:
            ex.backend_failed(502, f"more than {MAX_INTERIM} interim (1xx) responses")
            return
        ex.interims = interims
        # 1xx interim (100 Continue, 103 Early Hints): relay it and read on.  Never to an
        # HTTP/1.0 client (RFC 9110 §15.2: a server MUST NOT; Apache's ap_send_interim_response
        # does not either): it would take the interim head for the final one.
        if ex.client.http2:
            if not ex.client.send_interim(resp):
                return
        elif ex.head.version != "1.0":
            interim = response_head(resp, True, False, True, None)
            ex.head_sent += len(interim)    # a head: no part of the body the access log's %b counts
            if not send_to_client(ex, interim):
                return
        ex.respbuf = buf = bytearray(buf[head_size:size])
        size = len(buf)
        if not size:
            return
    ex.respbuf = None
    if resp.status == 101:
        _switch_protocols(ex, resp, bytes(buf[head_size:size]))
    else:
        _relay(ex, resp, buf, head_size, size)


def _untransferable(ex) -> None:
    """A transfer coding besides chunked (`gzip, chunked`) to a client that takes none:
    HTTP/2 has no transfer codings (RFC 9113 §8.2.2) and a server sends HTTP/1.0 none (RFC 9112
    §6.1).  Dropping the field gave the client gzip bytes that nothing said were gzip (review
    2026-12-04-h2-downgrade #2); decoding is more than a proxy should do, so it is our 502, as
    nginx answers any coding but chunked.  The backend did what HTTP/1.1 allows: no failover."""
    ex.worker.log_error("error", f"route {ex.route.name} backend {ex.origin.name}: a transfer coding other "
                                 "than chunked, which this client cannot take (502)")
    ex.answer(502, "The backend's response uses a transfer coding this client cannot take.")


def _relay(ex, resp, buf, start: int, size: int) -> None:
    """A final head: how its body is framed, whether the connections stay, and the head as
    it goes to the client (rewritten, or as it came); `_send` sends it."""
    head, worker, client = ex.head, ex.worker, ex.client
    h2 = client.http2
    http11 = head.version == "1.1" and not h2
    if not http11 and b"transfer-encoding" in resp.spans and not chunked_only(resp) \
            and head.method != b"HEAD" and resp.status not in (204, 304):       # (no body to decode)
        _untransferable(ex)
        return
    ex.status = resp.status
    if ex.member is not None:
        worker.lb.response(ex.member, resp.status, ex.origin)   # failonstatus=
    # An HTTP/1.0 client cannot take chunked: relay the data, end it with the close; HTTP/2
    # frames the body itself.  A body that ends at the close goes chunked to HTTP/1.1.
    dechunk = resp.chunked and not http11
    framing = ex.resp_framing = resp.body_framing(head.method, dechunk, http11)
    delimited = framing.close_delimited
    rechunked = delimited and framing.reframes
    # A head before the request body ended: the backend may read the rest as a request of its own.
    if not resp.keep_alive or delimited or ex.req_framing is not None:
        ex.reusable = False
        if ex.req_framing is not None:
            # The rest of the request body will not be read (Exchange.done): say so, as RFC
            # 9110 §10.1.1 asks of a final answer sent before the whole request content.
            ex.keep_alive = False
    elif not http11 and head.version == "1.0" and not _agreed_keep_alive(resp):
        ex.reusable = False   # the backend may close as an HTTP/1.0 request without keep-alive asks
    ex.keep_alive = (ex.keep_alive and (not client.eof or client.pipelined_head())
                     and (not worker.stopping or worker.keeps_alive(client))
                     and (rechunked or not delimited) and not dechunk)
    reverse = worker.reverse_maps.prefixes(ex.route, ex.origin, head, stated_proto_line(head, client.proto_line)
                                           if client.forwarded else client.proto_line) if ex.route.reverse else None
    if h2:
        out = b""        # the head goes as HTTP/2 fields, from `resp` (worker.h2.stream)
        head_size = 0
    elif rechunked:
        out = response_head(resp, ex.keep_alive, False, True, reverse, extra=_CHUNKED_LINE + (ex.cookie or b""))
        head_size = len(out)
    elif resp.plain and reverse is None and ex.cookie is None and not dechunk and http11:
        # Nothing to take out of the head: it goes as it came (None: straight from the buffer,
        # below), or with our Connection: close.  What response_head would build, for less.
        out = None if ex.keep_alive else resp.raw[:-2] + b"Connection: close\r\n\r\n"
        head_size = start if out is None else len(out)
    else:
        out = response_head(resp, ex.keep_alive, head.version == "1.0", not dechunk, reverse,
                            extra=ex.cookie or b"")
        head_size = len(out)
    _send(ex, resp, out, reverse, buf, start, size, head_size)


def _agreed_keep_alive(resp) -> bool:
    """Whether the backend agreed to keep the connection an HTTP/1.0 request asked it to keep
    (rewrite._HTTP10_KEEP_ALIVE): in so many words, as in the HTTP/1.0 keep-alive handshake
    (RFC 2068 §19.7.1).  An HTTP/1.1 answer without "close" is not enough: a server free to
    ignore an HTTP/1.0 keep-alive may close all the same, and a request taking the connection
    meanwhile (another client's POST, not retried) would get 502.  Servers that keep it say so
    (nginx, Apache); one that keeps it silently (Python's http.server) loses only the reuse."""
    return resp.connection is not None and b"keep-alive" in connection_tokens(resp.connection)


def _send(ex, resp, out, reverse, buf, start: int, size: int, head_size: int) -> None:
    """The head `out` (None: the head as it came, from `buf`) with the body bytes that came
    behind it in buf[start:size], to the client; then the exchange relays the rest, or is done.
    `head_size` goes on the access log's head count once the body is known good: a body that
    fails here is answered 502 instead, and that head never leaves (review 2026-12-04-backends
    #4: `%b` was short by it)."""
    framing, client = ex.resp_framing, ex.client
    if start < size:
        try:
            stop = framing.feed(buf, start, size)
        except BadFraming as exc:
            ex.backend_failed(502, f"invalid response body: {exc}")
            return
        ended = stop >= 0               # (a body finished before this feed would end at `start`)
        if not ended:
            stop = size
        elif stop < size:
            ex.reusable = False         # bytes after the body: not a connection to reuse
        elif (size == FIRST_READ or buf is not SHARED_BUFFER) and ex.conn.holds_more():
            ex.reusable = False         # the body ended where a full read did: what waits behind it?
        if out is None:                 # head and body, straight from where they were read
            out = SHARED_VIEW[:stop] if buf is SHARED_BUFFER else buf[:stop]
        else:
            out += framing.data_of(buf) if framing.reframes else buf[start:stop]
    else:
        ended = framing.finished
        if out is None:
            out = resp.raw
    ex.head_sent += head_size         # += : after the 1xx heads relayed
    if client.http2:
        client.send_response(ex, resp, reverse, out, ended)
        return
    ex.resp_started = True            # from here on, only closing is honest (Exchange.answer)
    ex.sent += len(out)               # send_to_client's work, inline: the split costs no call
    if ended and not ex.keep_alive:
        cork(client.ep.sock)          # the connection's last response, whole (worker.linger.cork)
    try:
        client.ep.send(out)
    except OSError:
        client.close()
        return
    if ended:
        ex.response_read()
    else:
        ex.relaying(more=size == FIRST_READ and buf is SHARED_BUFFER)


def send_to_client(ex, data) -> bool:
    """Head or body bytes to the client; False when it is gone (then closed)."""
    ex.sent += len(data)
    try:
        ex.client.ep.send(data)
    except OSError:
        ex.client.close()
        return False
    return True


def _switch_protocols(ex, resp, rest: bytes) -> None:
    """A 101: only for an upgrade we asked for, in a protocol the client asked for (unless
    the route says ANY or NONE, which tunnel whatever the backend switched to)."""
    asked = ex.upgrade
    offered = resp.get(b"upgrade")
    if asked is None or (not ex.route.any_protocol
                         and (offered is None or not connection_tokens(offered) & connection_tokens(asked))):
        ex.backend_failed(502, "backend switched protocols without an agreed upgrade")
        return
    if ex.client.http2:          # RFC 8441: a 200 on the stream (worker.h2.stream)
        ex.client.switch_protocols(ex, resp, rest)
        return
    head101 = response_head(resp, True, False, True, None, upgrade=True, extra=ex.cookie or b"")
    upgrade.open_tunnel(ex, head101, rest)
