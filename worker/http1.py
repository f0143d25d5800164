"""HTTP/1.1 message heads: validated by llhttp (`httptools`), read with regular expressions.

A head is kept as the bytes it arrived as (`Head.raw`).  llhttp checks all of it: the
request or status line, every field name and value, and the request-smuggling shapes
(CL with TE, duplicate or signed Content-Length, space before the colon, obs-fold, bare
CR or LF, NUL); it is given no per-field callback, because calling into Python once per
field was most of what a head cost (3.9 µs for wrk's two-line request, 4.4 µs for a
six-field response; now 1.9 and 2.1).  What the proxy itself needs is then read from
the validated bytes by one regular expression (`_SPECIAL`: Host, framing, Connection,
Upgrade, the hop-by-hop fields), and any other field only when asked for (`get`), so a
head that needs no rewriting is forwarded with a few slices.

We find a head's end ourselves and feed the parser exactly the head, so it can never
swallow a body or the next pipelined request; bodies are framed by `worker.framing`.
While a head is still incomplete its bytes are fed as they arrive, so garbage (bare LF,
NUL, bad tokens) is rejected at once instead of waiting for the header timeout.

What llhttp leaves to us (DESIGN.md): Apache's strict request line (exactly
"method SP target SP version"), HTTP/0.9 and 2.x request lines, Transfer-Encoding on
HTTP/1.0, exactly one valid Host, no body framing on an upgrade request, and the
LimitRequest* limits.
"""

from __future__ import annotations

import re

import httptools

from worker.framing import NO_BODY, ChunkedFraming, CloseFraming, LengthFraming

HEAD_END = b"\r\n\r\n"
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# RFC 9112 §3.2: uri-host [ ":" port ]; reg-name, IPv4 or [IPv6]
_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(?::[0-9]*)?")
# The fields the proxy acts on; llhttp has validated the lines, so "\n" + name + ":"
# can only be the start of a field.
_SPECIAL = re.compile(rb"\n(host|content-length|transfer-encoding|connection|upgrade|keep-alive|te|trailer"
                      rb"|proxy-connection|x-forwarded-for|x-forwarded-proto|x-forwarded-host):[ \t]*([^\r]*)",
                      re.IGNORECASE)
# Present in a head, these mean it cannot be forwarded as it came (worker.rewrite).
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"te", b"trailer", b"proxy-connection", b"upgrade"})
_VERSIONS = {b"HTTP/1.1": "1.1", b"HTTP/1.0": "1.0"}
_FIELDS: dict = {}     # lower-case name -> compiled pattern that finds its values


class HttpError(Exception):
    """A message we refuse: answered with `status` (400..505 for a request, 502 for a response)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def connection_tokens(value: bytes) -> set[bytes]:
    return {token.strip().lower() for token in value.split(b",") if token.strip()}


def _field(lname: bytes) -> re.Pattern:
    pattern = _FIELDS.get(lname)
    if pattern is None:
        pattern = _FIELDS[lname] = re.compile(rb"\n" + re.escape(lname) + rb":[ \t]*([^\r]*)", re.IGNORECASE)
    return pattern


class Head:
    """A validated head: `raw` is every byte of it, start line and final CRLF included."""

    __slots__ = ("raw", "line_end", "version", "keep_alive", "content_length", "chunked", "connection",
                 "hop", "forwarded")

    def get(self, lname: bytes) -> bytes | None:
        """The first value of the field `lname` (lower-case), without surrounding whitespace."""
        m = _field(lname).search(self.raw, self.line_end)
        return m.group(1).rstrip(b" \t") if m is not None else None

    def values(self, lname: bytes) -> list[bytes]:
        return [value.rstrip(b" \t") for value in _field(lname).findall(self.raw, self.line_end)]

    def fields(self) -> list[tuple[bytes, bytes]]:
        """(name as sent, value) for every field: the slow path of rewriting."""
        lines = self.raw[self.line_end + 2:-4].split(b"\r\n") if len(self.raw) > self.line_end + 4 else []
        return [(name, value.strip(b" \t")) for name, _, value in (line.partition(b":") for line in lines)]

    def _read_special(self) -> dict:
        """The fields the proxy acts on, in one pass (repeated ones combined, RFC 9110 §5.3)."""
        special: dict = {}
        for name, value in _SPECIAL.findall(self.raw, self.line_end):
            name = name.lower()
            value = value.rstrip(b" \t")
            if name in special:
                special[name].append(value)
            else:
                special[name] = [value]
        coding = special.get(b"transfer-encoding")
        self.chunked = coding is not None and b",".join(coding).rstrip().lower().endswith(b"chunked")
        length = special.get(b"content-length")
        self.content_length = int(length[0]) if length is not None else None
        connection = special.get(b"connection")
        self.connection = b", ".join(connection) if connection is not None else None
        self.keep_alive = _persistent(self.version, self.connection)
        self.hop = not _HOP_BY_HOP.isdisjoint(special)
        return special


class RequestHead(Head):
    __slots__ = ("method", "target", "upgrade", "host", "hosts")

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    def body_framing(self):
        """How the request body ends (None: no body)."""
        if self.chunked:
            return ChunkedFraming()
        if self.content_length:
            return LengthFraming(self.content_length)
        return None


class ResponseHead(Head):
    __slots__ = ("status", "reason")

    def body_framing(self, method: bytes, dechunk: bool):
        """How the response body ends (RFC 9112 §6.3)."""
        if method == b"HEAD" or self.status in (204, 304):
            return NO_BODY
        if self.chunked:
            return ChunkedFraming(decode=dechunk)
        if self.content_length is not None:
            return LengthFraming(self.content_length)
        return CloseFraming()


class HeadReader:
    """Reads one head from a growing buffer: `feed(buffer)` returns the head length
    once the head is complete (the bytes after it stay in the buffer), else 0.
    It is llhttp's protocol object too: the parser calls only `on_headers_complete`."""

    __slots__ = ("parser", "fed", "complete", "is_request", "limits")

    def __init__(self, is_request: bool, limits=None):
        self.is_request = is_request
        self.limits = limits
        self.parser = (httptools.HttpRequestParser if is_request else httptools.HttpResponseParser)(self)
        self.fed = 0
        self.complete = False

    def on_headers_complete(self) -> None:
        self.complete = True

    def feed(self, buffer, end: int = -1) -> int:
        """`end`: where HEAD_END starts in `buffer` when the caller knows it already."""
        if end < 0:
            end = buffer.find(HEAD_END, max(self.fed - 3, 0))
        stop = end + 4 if end >= 0 else len(buffer)
        if self.is_request:
            self._check_limits(buffer, stop, end >= 0)
        if stop > self.fed:
            try:
                self.parser.feed_data(buffer[self.fed:stop])
            except httptools.HttpParserUpgrade:
                pass   # the head is complete; what follows belongs to the tunnel
            except httptools.HttpParserInvalidMethodError:
                # A well-formed token llhttp does not know is 501; anything else is a bad line.
                space = buffer.find(b" ")
                method = bytes(buffer[:space]) if space > 0 else b""
                if self.is_request and _TOKEN.fullmatch(method):
                    raise HttpError(501, f"method {method[:20]!r} not implemented") from None
                raise HttpError(400 if self.is_request else 502, "malformed request line") from None
            except httptools.HttpParserError as exc:
                raise HttpError(400 if self.is_request else 502, f"malformed head: {exc}") from None
            self.fed = stop
        if end < 0:
            return 0
        if not self.complete:   # "\r\n\r\n" inside a start line: llhttp would have said so
            raise HttpError(400 if self.is_request else 502, "malformed head")
        return stop

    def _check_limits(self, buffer, stop: int, complete: bool) -> None:
        """LimitRequestLine (414), LimitRequestFieldSize and LimitRequestFields (431),
        and Apache's HttpProtocolOptions Strict request line."""
        limits = self.limits
        line_end = buffer.find(b"\r\n", 0, stop)
        if (line_end if line_end >= 0 else stop) > limits.request_line:
            raise HttpError(414, "request line too long")
        if line_end >= 0 and self.fed <= line_end:
            if (buffer.count(b" ", 0, line_end) != 2 or buffer.find(b"  ", 0, line_end) >= 0
                    or buffer[0] == 32 or buffer[line_end - 1] == 32):
                raise HttpError(400, "malformed request line")
        head_size = stop - (line_end + 2 if line_end >= 0 else stop)
        if not complete:
            if head_size > limits.header_fields * (limits.header_field + 2) + 2:
                raise HttpError(431, "request header fields too large")
            return
        if buffer.count(b"\r\n", line_end, stop) - 2 > limits.header_fields:
            raise HttpError(431, "too many request header fields")
        if head_size > limits.header_field:   # only then can one field be over the limit
            for line in bytes(buffer[line_end + 2:stop]).split(b"\r\n"):
                if len(line) > limits.header_field:
                    raise HttpError(431, "request header field too large")

    def request(self, raw: bytes) -> RequestHead:
        """The head just validated by `feed`, which returned len(raw)."""
        self.parser = None   # break the parser <-> reader cycle at once
        head = RequestHead()
        head.raw = raw
        head.line_end = line_end = raw.find(b"\r\n")
        head.method, head.target, version = raw[:line_end].split(b" ")
        head.version = _VERSIONS.get(version)
        if head.version is None:
            raise HttpError(505 if version.startswith(b"HTTP/2") else 400,
                            f"unsupported HTTP version {version[:12].decode('latin-1')}")
        special = head._read_special()
        hosts = special.get(b"host")
        if (hosts is not None and len(hosts) > 1) or (hosts is None and head.version == "1.1"):
            raise HttpError(400, "exactly one Host header is required")
        head.host = host = hosts[0] if hosts is not None else b""
        if host and not _HOST.fullmatch(host):
            raise HttpError(400, "invalid Host header")
        if head.chunked and head.version == "1.0":
            raise HttpError(400, "Transfer-Encoding in an HTTP/1.0 request")
        head.forwarded = b"x-forwarded-for" in special
        head.upgrade = None
        upgrade = special.get(b"upgrade")
        # RFC 9110 §7.8: Upgrade in an HTTP/1.0 request is ignored.
        if upgrade is not None and head.connection is not None and head.version == "1.1" \
                and b"upgrade" in connection_tokens(head.connection):
            head.upgrade = b", ".join(upgrade)
            if head.has_body:
                raise HttpError(400, "an upgrade request cannot carry a body")
        return head

    def response(self, raw: bytes) -> ResponseHead:
        parser = self.parser
        self.parser = None
        head = ResponseHead()
        head.raw = raw
        head.line_end = line_end = raw.find(b"\r\n")
        head.status = parser.get_status_code()
        head.version = parser.get_http_version()
        parts = raw[:line_end].split(b" ", 2)
        head.reason = parts[2] if len(parts) > 2 else b""
        head.forwarded = False
        head._read_special()
        return head


def _persistent(version: str, connection: bytes | None) -> bool:
    """RFC 9112 §9.3 (llhttp's own answer is not final until the message is)."""
    if connection is None:
        return version == "1.1"
    tokens = connection_tokens(connection)
    if b"close" in tokens:
        return False
    return version == "1.1" or b"keep-alive" in tokens
