"""Header fields across the protocol boundary: an HTTP/2 request's fields -> the HTTP/1.1
head the backend gets, and the backend's HTTP/1.1 head -> HTTP/2 response fields.

Toward the backend (RFC 9113 §8.2-8.3, §8.5 and RFC 8441): the pseudo-header fields become
the request line and `Host`, `cookie` crumbs are joined into one `Cookie`, `te: trailers` is
dropped (hop-by-hop), and an extended CONNECT becomes an `Upgrade` request with a fresh
`Sec-WebSocket-Key`.  A request the RFC calls malformed (uppercase or invalid names, a
connection-specific field, `te` other than `trailers`, pseudo-header fields repeated,
unknown, misplaced or missing, a value that is not a field value) raises `Malformed`: the
stream is reset with PROTOCOL_ERROR and nothing reaches a backend.  h2's own checks are off
(`validate_inbound_headers=False`): they end the whole connection for what the RFC makes a
stream error, and they cost a generator chain per field; the checks here are one pass.

The head built here is then parsed by `worker.http1.parse_request`, like any client's: the
same limits, the same llhttp validation, the same `RequestHead` for routing, rewriting and
logs.  Values are checked for CR, LF and NUL here because a CRLF inside a value would
otherwise become a field line of its own, which no HTTP/1.1 parser could tell apart.

Toward the client: the status line becomes `:status`, names are lower-cased, the
connection-specific fields (and those `Connection` names) and `Transfer-Encoding` stop here
(HTTP/2 frames the body), ProxyPassReverse applies as for HTTP/1.1.
"""

from __future__ import annotations

import base64
import hashlib
import os

from worker.framing import CLIENT_CERT_FIELD, FORWARDING_SPELLINGS
from worker.http1 import connection_tokens
from worker.rewrite import REVERSED

# RFC 9113 §8.2.2: "connection-specific" fields, malformed in an HTTP/2 request.
CONNECTION_SPECIFIC = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding",
                                 b"upgrade"})
# Never sent to an HTTP/2 client: the above, hop-by-hop ones, and framing (HTTP/2 frames bodies).
_RESPONSE_DROP = CONNECTION_SPECIFIC | {b"te", b"trailer", b""}
_RESPONSE_DROP_101 = _RESPONSE_DROP | {b"sec-websocket-accept"}
# RFC 9110 §6.5.1: fields a trailer section must not carry; and the forwarding fields, which a
# client's head loses too (mpm writes its own): here, unlike in a relayed HTTP/1.1 body, we
# write the trailer lines ourselves, so they are dropped, not refused (review 2026-12-03-http1 #10);
# so are those that name a client certificate (framing.CLIENT_CERT_FIELD).
_TRAILER_DROP = _RESPONSE_DROP | {b"content-length", b"host", b"content-type", b"content-encoding",
                                  b"authorization", b"set-cookie", b"cache-control", b"expect", b"max-forwards",
                                  b"pragma", b"range", b"forwarded"} | FORWARDING_SPELLINGS
_PSEUDO = frozenset({b":method", b":scheme", b":authority", b":path", b":protocol"})
_LOWER_TOKEN = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
_TOKEN = _LOWER_TOKEN + b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# RFC 8441 §5: not used over HTTP/2; the proxy writes its own key for the backend and checks the
# answer (a client's key went along: two keys, or with `:protocol: websocket, h2c` ours none).
_WEBSOCKET_KEYS = frozenset({b"sec-websocket-key", b"sec-websocket-accept"})
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CRLF = b"\r\n"


class Malformed(Exception):
    """RFC 9113 §8.1.1: a malformed request, a stream error of type PROTOCOL_ERROR."""


class Request:
    """An HTTP/2 request's fields, checked: what the stream and the head need."""

    __slots__ = ("method", "path", "authority", "protocol", "lines", "fields", "content_length", "trailers_ok")

    def head(self, framing: bytes, ws_key: bytes | None) -> bytes:
        """The HTTP/1.1 head: `framing` is b"" or a Content-Length / Transfer-Encoding line;
        `ws_key` the fresh key of an extended CONNECT for websocket."""
        if self.protocol is not None:
            upgrade = b"Upgrade: " + self.protocol + b"\r\nConnection: Upgrade\r\n"
            if ws_key is not None:
                upgrade += b"Sec-WebSocket-Key: " + ws_key + CRLF
            start = b"GET " + self.path
        elif self.method == b"CONNECT":
            upgrade, start = b"", b"CONNECT " + self.authority
        else:
            upgrade, start = b"", self.method + b" " + self.path
        head = b"".join((start, b" HTTP/1.1\r\nHost: ", self.authority, CRLF, self.lines, framing, upgrade, CRLF))
        # One line per field, plus the request line, Host, ours and the blank one: a CR or LF
        # hidden in a value shows up as more.  (NUL is refused by llhttp.)
        expected = self.fields + 3 + (framing != b"") + (2 + (ws_key is not None) if upgrade else 0)
        if head.count(b"\n") != expected or head.count(b"\r") != expected:
            raise Malformed("a field value holds CR or LF")
        return head


def read_request(headers) -> Request:
    """The request's fields (h2 hands them as (name, value) bytes pairs, in order)."""
    req = Request()
    req.method = req.path = req.authority = req.protocol = req.content_length = None
    req.trailers_ok = False
    scheme = host = None
    lines, cookies = [], []
    regular = False
    for name, value in headers:
        if name[:1] == b":":
            if regular or name not in _PSEUDO:
                raise Malformed(f"pseudo-header field {name[:20]!r} misplaced or unknown")
            _pseudo(req, name, value, scheme)
            if name == b":scheme":
                scheme = value
            continue
        regular = True
        if not name or name.translate(None, _LOWER_TOKEN):
            raise Malformed(f"invalid field name {name[:20]!r}")
        if value and (value[0] in (32, 9) or value[-1] in (32, 9)):
            raise Malformed(f"field {name[:20]!r} has surrounding whitespace")
        if name in CONNECTION_SPECIFIC:
            raise Malformed(f"connection-specific field {name.decode()!r}")
        if name == b"te":
            if value.lower() != b"trailers":
                raise Malformed("te other than trailers")
            req.trailers_ok = True
        elif name == b"cookie":
            cookies.append(value)
        elif name == b"host":
            if host is not None:     # as an HTTP/1.1 head with two is refused (RFC 9110 §7.2)
                raise Malformed("host repeated")
            host = value
        elif name in _WEBSOCKET_KEYS and req.protocol is not None:
            continue
        elif name == b"content-length":     # the stream writes the framing line (Request.head)
            if not value.isdigit() or req.content_length is not None:
                raise Malformed("invalid or repeated content-length")
            req.content_length = int(value)
        else:
            lines.append(name + b": " + value + CRLF)
    if cookies:       # RFC 9113 §8.2.3: crumbs joined with "; " for an HTTP/1.1 hop
        lines.append(b"cookie: " + b"; ".join(cookies) + CRLF)
    _required(req, scheme, host)
    req.lines = b"".join(lines)
    req.fields = len(lines)
    return req


def _pseudo(req: Request, name: bytes, value: bytes, scheme: bytes | None) -> None:
    attr = {b":method": "method", b":path": "path", b":authority": "authority", b":protocol": "protocol",
            b":scheme": None}[name]
    if attr is None:
        if value not in (b"http", b"https"):
            raise Malformed("unsupported :scheme")
        if scheme is not None:
            raise Malformed(":scheme repeated")
        return
    if getattr(req, attr) is not None:
        raise Malformed(f"{name.decode()} repeated")
    if attr == "protocol" and not all(part and not part.translate(None, _TOKEN) for part in value.split(b"/", 1)):
        raise Malformed(":protocol is not one protocol name")    # RFC 8441 §4: an Upgrade token
    setattr(req, attr, value)


def _required(req: Request, scheme, host) -> None:
    """RFC 9113 §8.3.1 and §8.5, RFC 8441 §4: which pseudo-header fields a request needs."""
    if req.authority is None:
        req.authority = host or b""     # Host stands in for :authority (an HTTP/1.1-converted client)
    elif host is not None and _origin(host, scheme) != _origin(req.authority, scheme):
        # RFC 9113 §8.3.1 (SHOULD be malformed), as HAProxy: a filter before us may have read
        # the other one (it was dropped, and :authority went on).
        raise Malformed("host differs from :authority")
    if req.method is None:
        raise Malformed(":method missing")
    if req.method == b"CONNECT" and req.protocol is None:
        if scheme is not None or req.path is not None or not req.authority:
            raise Malformed("CONNECT takes :authority alone")
        return
    if req.protocol is not None and req.method != b"CONNECT":
        raise Malformed(":protocol without CONNECT")
    if scheme is None or not req.path:
        raise Malformed(":scheme or :path missing")
    if req.path[:1] != b"/" and not (req.path == b"*" and req.method == b"OPTIONS"):
        raise Malformed(":path must start with /")


def _origin(authority: bytes, scheme: bytes | None) -> bytes:
    """An authority compared as an origin: case aside, and the scheme's default port written
    or not (`a.test:443` is `a.test` for https; review 2026-12-04-today #8)."""
    authority = authority.lower()
    default = b":443" if scheme == b"https" else b":80"
    return authority[:-len(default)] if authority.endswith(default) else authority


# == toward the client ==========================================================================
def response_fields(resp, reverse: tuple | None, extra: bytes = b"", upgrade: bool = False) -> list:
    """The fields of an HTTP/2 response for the backend's head `resp` (worker.http1.ResponseHead).
    `reverse` is ProxyPassReverse's (backend prefix, client prefix); `extra` our own field
    lines (a sticky Set-Cookie), CRLF-terminated.  `upgrade`: the head is a 101 that
    becomes an RFC 8441 `:status 200` (its Sec-WebSocket-Accept was checked, not relayed)."""
    fields = [(b":status", b"200" if upgrade else b"%d" % resp.status)]
    drop = _RESPONSE_DROP_101 if upgrade else _RESPONSE_DROP
    if resp.connection is not None:
        drop = drop | connection_tokens(resp.connection)
    _convert(resp.raw[resp.line_end + 2:-4] + (CRLF + extra[:-2] if extra else b""), drop, reverse, fields)
    return fields


def answer_fields(status: int, length: int, extra: bytes) -> list:
    """The fields of our own HTML answer (worker.rewrite.error_page) of `length` bytes;
    `extra` is HTTP/1.1 header lines (Retry-After)."""
    fields = [(b":status", b"%d" % status), (b"content-type", b"text/html; charset=utf-8"),
              (b"content-length", b"%d" % length)]
    for line in extra.split(b"\r\n"):
        if line:
            name, _, value = line.partition(b":")
            fields.append((name.strip().lower(), value.strip()))
    return fields


def trailer_fields(lines: list) -> list:
    """A chunked body's trailer section (lines without CRLF) as HTTP/2 trailers."""
    fields: list = []
    _convert(CRLF.join(lines), _TRAILER_DROP, None, fields)
    return fields


def _convert(block: bytes, drop, reverse: tuple | None, fields: list) -> None:
    for line in block.split(CRLF):
        name, _, value = line.partition(b":")
        name = name.lower()
        if name in drop:
            continue
        value = value.strip(b" \t")
        if reverse is not None and name in REVERSED and value.startswith(reverse[0]):
            value = reverse[1] + value[len(reverse[0]):]
        fields.append((name, value))


def trailer_lines(headers) -> bytes:
    """An HTTP/2 request's trailers as HTTP/1.1 chunked trailer lines; Malformed as for heads."""
    lines = []
    for name, value in headers:
        if name[:1] == b":" or not name or name.translate(None, _LOWER_TOKEN) or name in CONNECTION_SPECIFIC:
            raise Malformed(f"invalid trailer field {name[:20]!r}")
        if value.find(b"\r") >= 0 or value.find(b"\n") >= 0 or value.find(b"\0") >= 0:
            raise Malformed("a trailer value holds CR, LF or NUL")
        if value and (value[0] in (32, 9) or value[-1] in (32, 9)):
            raise Malformed(f"trailer {name[:20]!r} has surrounding whitespace")    # as in the head
        if name not in _TRAILER_DROP and not CLIENT_CERT_FIELD.match(name):
            lines.append(name + b": " + value + CRLF)
    return b"".join(lines)


# == RFC 8441 -> RFC 6455 ========================================================================
def websocket_key() -> bytes:
    """A fresh Sec-WebSocket-Key for the backend (the HTTP/2 client sends none)."""
    return base64.b64encode(os.urandom(16))


def websocket_accept(key: bytes) -> bytes:
    """The Sec-WebSocket-Accept a backend must answer `key` with (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + _WS_GUID).digest())
