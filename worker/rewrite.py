"""Rewriting heads as they cross the proxy (mod_proxy_http's rules).

Hop-by-hop fields (RFC 9110 §7.6.1) stop here: Connection and every field it names
(except the two that frame the message), Keep-Alive, TE, Trailer, Proxy-Connection, and
Upgrade unless the exchange is an upgrade.  Transfer-Encoding stays, because bodies are
relayed with their framing.  Toward the backend, Host and X-Forwarded-For/-Proto/-Host
are ours to set, and a client's own Forwarded (RFC 7239) goes: it would contradict them.

A head is rewritten from the bytes it arrived as: one regular expression removes the
fields we replace or drop, and the rest is copied in one slice, so the usual head
(no Connection naming other fields) costs a few C calls whatever its size.  The field
lines that do not depend on the request (`X-Forwarded-Proto`, `Host` toward a given
backend, `X-Forwarded-For` for a client that sent none) are built once, by the caller.  The
head toward the backend is put together in C where worker/_heads_write.c is built (the Python
here stays its reference: tests/test_head_codec.py).
"""

from __future__ import annotations

from worker.framing import FORWARDING_SPELLINGS
from worker.headfixes import reason_phrase
from worker.headscan import joined_head
from worker.http1 import HOP_BY_HOP, connection_tokens

# A client's own Forwarded (RFC 7239) goes too: frameworks that read it before X-Forwarded-*
# (Spring's ForwardedHeaderFilter) would take the client's for=/proto=/host= over ours (review
# 2026-12-03-rewrite #1).  A trusted proxy's stays (`request_head`'s `trusted`).  X-Forwarded-*
# go in every spelling, "_" for "-" too (worker.framing.FORWARDING_SPELLINGS).
_REQUEST_DROP = HOP_BY_HOP | FORWARDING_SPELLINGS | {b"host", b"forwarded"}
_REQUEST_DROP_FRAMING = _REQUEST_DROP | {b"transfer-encoding", b"content-length"}
_TRUSTED_DROP = _REQUEST_DROP - {b"forwarded"}
_TRUSTED_DROP_FRAMING = _REQUEST_DROP_FRAMING - {b"forwarded"}
_RESPONSE_DROP_101 = HOP_BY_HOP - {b"upgrade"}
_KNOWN_TOKENS = frozenset({b"keep-alive", b"close", b"upgrade"})   # Connection values naming no field
# Fields that frame the message are never hop-by-hop, whatever Connection says (RFC 9110 §7.6.1:
# a sender MUST NOT name a field meant for every recipient).  Dropped, a relayed body would be
# read by the next hop as the next message: a request smuggled past the routes.  nginx and
# HAProxy ignore such options too.
_NEVER_HOP = frozenset({b"content-length", b"transfer-encoding"})
_CHUNKED = frozenset({b"transfer-encoding"})
_UPGRADE = frozenset({b"upgrade"})
_NO_NAMES: frozenset = frozenset()
REVERSED = frozenset({b"location", b"content-location", b"uri"})
# An HTTP/1.0 request without keep-alive asks the backend to close after its answer (RFC 9112
# §9.3), whatever the client wants of its own connection: so every one asks for keep-alive,
# as HAProxy does, and response._relay pools the connection only if the backend says yes.
# (nginx sends its HTTP/1.0 requests with "Connection: close" and pools none; Apache talks
# HTTP/1.1 to backends, which may then chunk what an HTTP/1.0 client gets.)  An upgrade is
# never HTTP/1.0 (routing), so this is the request's only Connection line.
_HTTP10_KEEP_ALIVE = b" HTTP/1.0\r\nConnection: keep-alive\r\n"
CRLF = b"\r\n"


def _named_by_connection(connection: bytes | None) -> set:
    """The fields a Connection value names besides keep-alive/close/upgrade."""
    if connection is None:
        return set()
    lower = connection.lower()
    if lower in _KNOWN_TOKENS:
        return set()
    return connection_tokens(lower) - _KNOWN_TOKENS - _NEVER_HOP


def _kept_lines(head, drop: frozenset, keep: frozenset = _NO_NAMES) -> bytes:
    """The head's field lines minus the fields in `drop` and those its Connection names
    (never those in `keep`), as CRLF-led lines: b"" or b"\\r\\nName: v\\r\\nName: v"."""
    raw = head.raw
    cuts = []
    for name, found in head.spans.items():       # a loop, not a comprehension: no call (3.11)
        if name in drop:
            cuts += found
    if head.connection is not None:      # tested here: most heads have none, and a call costs
        for name in _named_by_connection(head.connection) - keep - drop:
            cuts += head.line_spans(name)
    if not cuts:
        return raw[head.line_end:-4]
    if len(cuts) > 1:
        cuts.sort()
    pieces = []
    pos = head.line_end
    for start, end, _ in cuts:
        pieces.append(raw[pos:start])
        pos = end
    pieces.append(raw[pos:-4])
    return b"".join(pieces)


def request_head(head, target: bytes, host_line: bytes, xff_line: bytes, proto_line: bytes,
                 upgrade: bytes | None, trusted: bool = False) -> bytes:
    """The head sent to the backend: HTTP/1.1 (1.0 for a 1.0 client, so the backend never
    chunks to it), keep-alive always (`_HTTP10_KEEP_ALIVE`).  `host_line` is b"Host: ...\\r\\n";
    `xff_line` is b"X-Forwarded-For: client\\r\\n" for a client that sent none (else appended to).
    `trusted`: the peer is one of `limits.trusted_proxies`, whose X-Forwarded-Proto/-Host and
    Forwarded state what its client used, and go on (review 2026-12-03-rewrite #4)."""
    if b"x-forwarded-for" in head.spans:
        prior = head.joined(b"x-forwarded-for")
        xff_line = b"X-Forwarded-For: " + prior + b", " + xff_line[17:]
    version = b" HTTP/1.1\r\n" if head.version == "1.1" else _HTTP10_KEEP_ALIVE
    forwarded_host = b"X-Forwarded-Host: " + head.host + CRLF if head.host else b""
    upgrade_lines = b"Upgrade: " + upgrade + b"\r\nConnection: Upgrade\r\n" if upgrade is not None else b""
    if trusted:
        proto_line = stated_proto_line(head, proto_line)
        if b"x-forwarded-host" in head.spans:
            forwarded_host = b"X-Forwarded-Host: " + head.joined(b"x-forwarded-host") + CRLF
    framing_line = head.framing_line      # an odd spelling: sent on as the one every parser reads alike
    if framing_line is None:
        drop = _TRUSTED_DROP if trusted else _REQUEST_DROP
    else:
        drop = _TRUSTED_DROP_FRAMING if trusted else _REQUEST_DROP_FRAMING
    # In C unless Connection names fields to drop (below): "close" and "keep-alive" name none,
    # and every client that does not keep its connection sends one (S7c: each request).
    if joined_head is not None and (head.connection is None or head.connection.lower() in _KNOWN_TOKENS):
        out = joined_head((head.method, b" ", target, version, host_line), head.raw, head.line_end, head.spans,
                          drop, framing_line, (xff_line, proto_line, forwarded_host, upgrade_lines, CRLF))
        if out is not None:
            return out
    kept = _kept_lines(head, drop) + (framing_line or b"")
    return b"".join((head.method, b" ", target, version, host_line, kept[2:], CRLF if kept else b"",
                     xff_line, proto_line, forwarded_host, upgrade_lines, CRLF))


def stated_proto_line(head, proto_line: bytes) -> bytes:
    """A trusted proxy's X-Forwarded-Proto line (the scheme its client used: https before a
    balancer that ends TLS and speaks http to us), else ours.  Apache and HAProxy pass it on;
    replaced by ours, an https-only backend behind such a balancer redirects forever."""
    if b"x-forwarded-proto" not in head.spans:
        return proto_line
    return b"X-Forwarded-Proto: " + head.joined(b"x-forwarded-proto") + CRLF


def response_head(resp, keep_alive: bool, client_http10: bool, keep_chunked: bool,
                  reverse: tuple | None, upgrade: bool = False, extra: bytes = b"") -> bytes:
    """The head sent to the client.

    `reverse` is (backend URL prefix, client URL prefix) for ProxyPassReverse, or None.
    `keep_chunked` False drops Transfer-Encoding (a chunked body de-chunked for an
    HTTP/1.0 client).  `upgrade` keeps Upgrade and says `Connection: Upgrade` (101).
    `extra` is field lines of ours (a sticky Set-Cookie), CRLF-terminated."""
    raw = resp.raw
    if raw.startswith(b"HTTP/1.1 "):
        status_line = raw[:resp.line_end]
    else:
        status_line = b"HTTP/1.1 %d %s" % (resp.status, resp.reason)
    if upgrade:
        lines = _kept_lines(resp, _RESPONSE_DROP_101, _UPGRADE)
    else:
        lines = _kept_lines(resp, HOP_BY_HOP if keep_chunked else HOP_BY_HOP | _CHUNKED)
    if reverse is not None:
        lines = _reverse(lines, reverse)
    if upgrade:
        connection = b"\r\nConnection: Upgrade\r\n"
    elif not keep_alive:
        connection = b"\r\nConnection: close\r\n"
    elif client_http10:
        connection = b"\r\nConnection: keep-alive\r\n"
    else:
        connection = CRLF
    return b"".join((status_line, lines, connection, extra, CRLF))


# ProxyPassReverse's prefixes per (route, backend, Host, scheme): the Host is the client's, so a
# client sending a new one with every request would grow the cache without end.  Emptied when
# full: building an entry again costs a few hundred nanoseconds.
REVERSE_CACHE_MAX = 1024


class ReverseMaps:
    """A worker's ProxyPassReverse prefixes, made once per (route, backend, Host, scheme)."""

    __slots__ = ("made",)

    def __init__(self) -> None:
        self.made: dict = {}

    def prefixes(self, route, origin, head, proto_line: bytes) -> tuple:
        """(backend URL prefix, client URL prefix) for ProxyPassReverse (`_reverse`)."""
        key = (id(route), id(origin), head.host, proto_line)
        pair = self.made.get(key)
        if pair is None:
            if len(self.made) >= REVERSE_CACHE_MAX:   # the key holds the client's Host
                self.made.clear()
            base = route.base if route.prefix is not None else b"/"
            client_path = route.prefix if route.prefix is not None else b"/"
            # Ours, or a trusted proxy's (rewrite.stated_proto_line): its first value is the client's.
            stated = proto_line[18:].split(b",", 1)[0].strip(b" \t\r\n").lower()
            proto = b"https" if stated == b"https" else b"http"
            # No Host (HTTP/1.0): a path-absolute Location, as nginx's `proxy_redirect default`
            # writes, rather than the backend's authority with our path (review 2026-12-03-rewrite #5).
            client = proto + b"://" + head.host + client_path if head.host else client_path
            pair = self.made[key] = (origin.origin_bytes + base, client)
        return pair


def _reverse(lines: bytes, reverse: tuple) -> bytes:
    """ProxyPassReverse on Location, Content-Location and URI."""
    backend_prefix, client_prefix = reverse
    if backend_prefix not in lines:
        return lines
    out = []
    for line in lines.split(CRLF):
        name, sep, value = line.partition(b":")
        if sep and name.lower() in REVERSED:
            stripped = value.lstrip(b" \t")
            if stripped.startswith(backend_prefix):
                line = name + b": " + client_prefix + stripped[len(backend_prefix):]
        out.append(line)
    return CRLF.join(out)


def error_page(status: int, message: str) -> bytes:
    """The body of an answer of our own (HTTP/1.1 here, HTTP/2 in worker.h2.stream)."""
    reason = reason_phrase(status)
    return f"<!DOCTYPE html>\n<title>{status} {reason}</title>\n<h1>{reason}</h1>\n<p>{message}</p>\n".encode()


_ANSWERS: dict = {}      # our own answers, made once: a flood of 429s costs a dict lookup each


def error_response(status: int, message: str, keep_alive: bool = False, extra: bytes = b"") -> bytes:
    """Our own answer; `extra` is CRLF-terminated header lines (Retry-After)."""
    key = (status, message, keep_alive, extra)
    answer = _ANSWERS.get(key)
    if answer is None:
        if len(_ANSWERS) > 256:       # messages can carry request bytes: keep it bounded
            _ANSWERS.clear()
        answer = _ANSWERS[key] = _error_response(status, message, keep_alive, extra)
    return answer


def _error_response(status: int, message: str, keep_alive: bool, extra: bytes) -> bytes:
    reason = reason_phrase(status)
    body = error_page(status, message)
    connection = b"keep-alive" if keep_alive else b"close"
    return b"".join((
        f"HTTP/1.1 {status} {reason}\r\n".encode(),
        b"Content-Type: text/html; charset=utf-8\r\nContent-Length: ", str(len(body)).encode(),
        b"\r\nConnection: ", connection, b"\r\n", extra, b"\r\n", body))
