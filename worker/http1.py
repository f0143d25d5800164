"""HTTP/1.1 message heads: strict parsing with llhttp (`httptools`), limits, framing.

Only heads go through llhttp.  We find a head's end ourselves and feed the parser
exactly the head, so it can never swallow a body or the next pipelined request;
bodies are framed by `worker.framing`.  While a head is still incomplete its bytes
are fed as they arrive, so garbage (bare LF, NUL, bad tokens) is rejected at once
instead of waiting for the header timeout.

llhttp already rejects the request-smuggling shapes (CL with TE, duplicate or signed
Content-Length, space before the colon, obs-fold, bare CR, NUL).  What it leaves to
us (DESIGN.md): HTTP/0.9 and 2.x request lines, Transfer-Encoding on HTTP/1.0,
exactly one Host, and no body framing on an upgrade request.
"""

from __future__ import annotations

import re

import httptools

HEAD_END = b"\r\n\r\n"
_SPECIAL = frozenset({b"host", b"content-length", b"transfer-encoding", b"connection", b"upgrade"})
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# RFC 9112 §3.2: uri-host [ ":" port ]; reg-name, IPv4 or [IPv6] (empty allowed for 1.1 only as "Host:")
_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(?::[0-9]*)?")


class HttpError(Exception):
    """A request we answer with `status` and then close."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def connection_tokens(value: bytes) -> set[bytes]:
    return {token.strip().lower() for token in value.split(b",") if token.strip()}


class _HeadCollector:
    """The callback object llhttp calls while it parses one head."""

    __slots__ = ("url", "headers", "special", "hosts", "complete", "reason")

    def __init__(self) -> None:
        self.url = b""
        self.headers: list = []       # (lower-case name, name, value)
        self.special: dict = {}       # the headers framing and routing need, gathered in one pass
        self.hosts = 0
        self.complete = False
        self.reason = b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        lname = name.lower()
        self.headers.append((lname, name, value))
        if lname in _SPECIAL:
            special = self.special
            if lname == b"host":
                self.hosts += 1
            if lname in special:     # repeated list-valued fields combine (RFC 9110 §5.3)
                special[lname] += b", " + value
            else:
                special[lname] = value

    def on_headers_complete(self) -> None:
        self.complete = True


class RequestHead:
    __slots__ = ("method", "target", "version", "headers", "keep_alive", "content_length",
                 "chunked", "upgrade", "host", "raw_size")

    def get(self, lname: bytes) -> bytes | None:
        for name, _, value in self.headers:
            if name == lname:
                return value
        return None

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)


class ResponseHead:
    __slots__ = ("status", "reason", "version", "headers", "keep_alive", "content_length",
                 "chunked", "raw_size")

    def get(self, lname: bytes) -> bytes | None:
        for name, _, value in self.headers:
            if name == lname:
                return value
        return None


class HeadReader:
    """Reads one head from a growing buffer: `feed(buffer)` returns the head length
    once the head is complete (the bytes after it stay in the buffer), else 0."""

    __slots__ = ("collector", "parser", "fed", "is_request", "limits")

    def __init__(self, is_request: bool, limits=None):
        self.collector = _HeadCollector()
        self.is_request = is_request
        self.limits = limits
        factory = httptools.HttpRequestParser if is_request else httptools.HttpResponseParser
        self.parser = factory(self.collector)
        self.fed = 0

    def feed(self, buffer: bytearray) -> int:
        end = buffer.find(HEAD_END, max(self.fed - 3, 0))
        stop = end + 4 if end >= 0 else len(buffer)
        if self.is_request:
            self._check_limits(buffer, stop, end >= 0)
        if stop > self.fed:
            try:
                self.parser.feed_data(bytes(buffer[self.fed:stop]))
            except httptools.HttpParserUpgrade:
                pass   # the head is complete; what follows belongs to the tunnel
            except httptools.HttpParserInvalidMethodError:
                # A well-formed token llhttp does not know is 501; anything else is a bad line.
                method = bytes(buffer[:buffer.find(b" ")]) if b" " in buffer else b""
                if self.is_request and _TOKEN.fullmatch(method):
                    raise HttpError(501, f"method {method[:20]!r} not implemented") from None
                raise HttpError(400 if self.is_request else 502, "malformed request line") from None
            except httptools.HttpParserError as exc:
                raise HttpError(400 if self.is_request else 502, f"malformed head: {exc}") from None
            self.fed = stop
        if end < 0:
            return 0
        if not self.collector.complete:   # "\r\n\r\n" inside a request line: llhttp would have said so
            raise HttpError(400 if self.is_request else 502, "malformed head")
        return stop

    def _check_limits(self, buffer: bytearray, stop: int, complete: bool) -> None:
        """LimitRequestLine (414), LimitRequestFieldSize and LimitRequestFields (431)."""
        limits = self.limits
        line_end = buffer.find(b"\r\n", 0, stop)
        if (line_end if line_end >= 0 else stop) > limits.request_line:
            raise HttpError(414, "request line too long")
        head_size = stop - (line_end + 2 if line_end >= 0 else stop)
        if line_end >= 0 and self.fed <= line_end:
            # Apache's HttpProtocolOptions Strict: exactly "method SP target SP version".
            if (buffer.count(b" ", 0, line_end) != 2 or buffer.find(b"  ", 0, line_end) >= 0
                    or buffer[0] == 32 or buffer[line_end - 1] == 32):
                raise HttpError(400, "malformed request line")
        if not complete:
            if head_size > limits.header_fields * (limits.header_field + 2) + 2:
                raise HttpError(431, "request header fields too large")
            return
        if head_size > limits.header_field:   # only then can one field be over the limit
            for line in bytes(buffer[line_end + 2:stop]).split(b"\r\n"):
                if len(line) > limits.header_field:
                    raise HttpError(431, "request header field too large")

    def request(self, head_size: int) -> RequestHead:
        parser, collector = self.parser, self.collector
        head = RequestHead()
        head.raw_size = head_size
        head.method = parser.get_method()
        head.target = collector.url
        head.version = version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise HttpError(505 if version.startswith("2") else 400, f"unsupported HTTP version {version}")
        headers = head.headers = collector.headers
        if len(headers) > self.limits.header_fields:
            raise HttpError(431, "too many request header fields")
        special = collector.special
        _frame(head, special)
        if collector.hosts > 1 or (version == "1.1" and not collector.hosts):
            raise HttpError(400, "exactly one Host header is required")
        head.host = host = special.get(b"host", b"")
        if host and not _HOST.fullmatch(host):
            raise HttpError(400, "invalid Host header")
        if head.chunked and version == "1.0":
            raise HttpError(400, "Transfer-Encoding in an HTTP/1.0 request")
        connection = special.get(b"connection")
        head.keep_alive = _persistent(version, connection)
        upgrade = special.get(b"upgrade")
        head.upgrade = None
        # RFC 9110 §7.8: Upgrade in an HTTP/1.0 request is ignored.
        if upgrade is not None and connection is not None and version == "1.1" \
                and b"upgrade" in connection_tokens(connection):
            head.upgrade = upgrade
            if head.has_body:
                raise HttpError(400, "an upgrade request cannot carry a body")
        self.parser = None   # break the parser <-> collector cycle early
        return head

    def response(self, head_size: int) -> ResponseHead:
        parser, collector = self.parser, self.collector
        head = ResponseHead()
        head.raw_size = head_size
        head.status = parser.get_status_code()
        head.reason = collector.reason
        head.version = parser.get_http_version()
        head.headers = collector.headers
        _frame(head, collector.special)
        head.keep_alive = _persistent(head.version, collector.special.get(b"connection"))
        self.parser = None
        return head


def _persistent(version: str, connection: bytes | None) -> bool:
    """RFC 9112 §9.3 (llhttp's own answer is not final until the message is)."""
    if connection is None:
        return version == "1.1"
    tokens = connection_tokens(connection)
    if b"close" in tokens:
        return False
    return version == "1.1" or b"keep-alive" in tokens


def _frame(head, special: dict) -> None:
    """Content-Length / chunked, as llhttp validated them (chunked, if present, is last)."""
    length = special.get(b"content-length")
    head.content_length = int(length) if length is not None else None
    coding = special.get(b"transfer-encoding")
    head.chunked = coding is not None and coding.rstrip().lower().endswith(b"chunked")
