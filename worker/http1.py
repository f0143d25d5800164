"""HTTP/1.1 message heads: validated by llhttp (`httptools`), then read.

A head is kept as the bytes it arrived as (`Head.raw`).  llhttp checks all of it: the
request or status line, every field name and value, and the request-smuggling shapes
(CL with TE, duplicate or signed Content-Length, space before the colon, obs-fold, bare
CR or LF, NUL); it is given no per-field callback, because calling into Python once per
field was most of what a head cost (3.9 µs for wrk's two-line request, 4.4 µs for a
six-field response; now 1.9 and 2.1).  What the proxy itself needs is then read from
the validated bytes by one scan (worker.headscan: Host, framing, Connection, Upgrade, the
hop-by-hop fields), and any other field only when asked for (`get`), so a head that needs
no rewriting is forwarded with a few slices.

Where the C head codec is built (worker.headscan), the usual heads are read whole in C,
which answers them as RequestHead and ResponseHead objects, and a final response head of the
strictest shape is not fed to llhttp, which has nothing to refuse in it (worker/_heads_read.c
says which); every other head is read by the Python below, which is the reference.
A request head is always judged by llhttp.

We find a head's end ourselves and feed the parser exactly the head, so it can never
swallow a body or the next pipelined request; bodies are framed by `worker.framing`.
While a head is still incomplete its bytes are fed as they arrive, so garbage (bare LF,
NUL, bad tokens) is rejected at once instead of waiting for the header timeout.

What llhttp leaves to us (DESIGN.md): Apache's strict request line and the LimitRequest*
limits (`worker.headchecks`, with llhttp's own verdict), HTTP/0.9 and 2.x request lines,
Transfer-Encoding on HTTP/1.0, exactly one valid Host, and no body framing on an upgrade
request.  Two more, where peers parse differently:

- Transfer-Encoding: llhttp accepts codings before the final `chunked` ("gzip, chunked");
  we answer 501 as nginx does for anything but chunked, so no backend can frame the body
  otherwise.  The framing field goes to the backend in one spelling only, as HAProxy and
  nginx re-emit theirs (`framing_line`): the spellings that mean plain chunked (",chunked",
  case, a tab or two spaces before it, the value split over lines) as
  `Transfer-Encoding: chunked`, and a Content-Length of other bytes than its number's
  ("005", tabs around it) as `Content-Length: 5`.  All are valid HTTP, but a backend that
  trims only spaces, or reads "005" otherwise, would frame the body another way than we
  do: a request smuggled past the routes (review 2026-12-04-differential #3).
- An absolute-form target's authority wins over Host (RFC 9112 §3.2.2: a proxy "MUST
  ignore the received Host header field ... and instead replace it with the host
  information of the request-target"): the head is rewritten so that Host *is* the
  authority, and everything after (routing conditions, preserve_host, X-Forwarded-Host,
  the backend) sees one host.  Refusing a mismatch with 400 would be the other choice;
  the RFC asks for the replacement, and a client talking to us as to a forward proxy
  sends absolute-form with any Host.  userinfo in the authority is refused (400).
"""

from __future__ import annotations

from worker.authority import absolute_form, valid_host
from worker.framing import (
    CLOSE_FRAMING,
    NO_BODY,
    ChunkedFraming,
    LengthFraming,
    RechunkedCloseFraming,
)
from worker.headchecks import (
    NO_CALLBACKS,
    REQUEST_PARSER,
    RESPONSE_PARSER,
    HttpError,
    check_fields,
    check_request_line,
    validate,
    validate_request,
)
from worker.headfixes import CONTROL, FRAMING, with_standard_reason, without_lines
from worker.headscan import SCANNED, make_heads_as, scan_fields, usual_request_head, usual_response_head

HEAD_END = b"\r\n\r\n"
_VERSIONS = {b"HTTP/1.1": "1.1", b"HTTP/1.0": "1.0"}
# Where a framing line's name ends: raw[start:end] of a canonical one is b"\r\nTransfer-Encoding: chunked"
# or b"\r\nContent-Length: 5" (any case of the name, which every parser reads alike).
_TE_NAME_END = len(b"\r\nTransfer-Encoding")
_CL_NAME_END = len(b"\r\nContent-Length")
_CANONICAL_CHUNKED = b"\r\nTransfer-Encoding: chunked"
# Hop-by-hop fields (RFC 9110 §7.6.1; worker.rewrite drops them): a response head without
# any, from an HTTP/1.1 backend, may go to an HTTP/1.1 client as it came (`ResponseHead.plain`).
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"te", b"trailer", b"proxy-connection", b"upgrade"})
_KEYS: dict = {}         # lower-case name -> b"\nname:"
_KEYS_MAX = 256          # names come from messages too (a Connection header's list): bounded


def _key(lname: bytes) -> bytes:
    key = _KEYS.get(lname)
    if key is None:
        key = b"\n" + lname + b":"
        if len(_KEYS) < _KEYS_MAX:
            _KEYS[lname] = key
    return key


def connection_tokens(value: bytes) -> set[bytes]:
    return {token.strip().lower() for token in value.split(b",") if token.strip()}


class Head:
    """A validated head: `raw` is every byte of it, start line and final CRLF included;
    `lower` the same, lower-cased (field names are found in it, values cut from `raw`).
    `spans` maps each field the proxy acts on to where its lines are, as (start, end)
    offsets such that raw[start:end] is b"\\r\\nName: value": what rewriting cuts out."""

    __slots__ = ("raw", "lower", "line_end", "version", "keep_alive", "content_length", "chunked",
                 "connection", "upgrade", "spans")

    def get(self, lname: bytes) -> bytes | None:
        """The first value of the field `lname` (lower-case), without surrounding whitespace."""
        found = self.spans.get(lname)
        if found is not None:
            return self.raw[found[0][2]:found[0][1]].strip(b" \t")
        if lname in SCANNED:           # the scan looked for it: it is not there
            return None
        key = _key(lname)
        pos = self.lower.find(key, self.line_end)
        if pos < 0:
            return None
        return self.raw[pos + len(key):self.raw.find(b"\r", pos)].strip(b" \t")

    def values(self, lname: bytes) -> list[bytes]:
        """Every value of the field `lname`, in order."""
        key, raw, lower = _key(lname), self.raw, self.lower
        found = []
        pos = lower.find(key, self.line_end)
        while pos >= 0:
            end = raw.find(b"\r", pos)
            found.append(raw[pos + len(key):end].strip(b" \t"))
            pos = lower.find(key, end)
        return found

    def line_spans(self, lname: bytes) -> list[tuple[int, int, int]]:
        """Where the lines of field `lname` are: (start, end, value start) with
        raw[start:end] == b"\\r\\nName: value" (see `spans`)."""
        key, lower = _key(lname), self.lower
        found = []
        pos = lower.find(key, self.line_end)
        while pos >= 0:
            end = lower.find(b"\r", pos)
            found.append((pos - 1, end, pos + len(key)))
            pos = lower.find(key, end)
        return found

    def _scan(self) -> dict:
        """Where the fields the proxy acts on are: {name: [(start, end, value start), ...]}
        for those present.  Sets `lower`, and the framing and persistence the proxy needs."""
        self.lower, spans = scan_fields(self.raw)
        self.spans = spans
        coding = spans.get(b"transfer-encoding")
        # Chunked when its last coding is (RFC 9112 §6.3): the last token, not the value's end,
        # which took "xchunked" for chunked, while the client read that response to the close
        # (review 2026-12-04-backends #3).  Another last coding: the body ends at the close.
        self.chunked = coding is not None and \
            self.joined(b"transfer-encoding").rpartition(b",")[2].strip(b" \t").lower() == b"chunked"
        length = spans.get(b"content-length")
        self.content_length = int(self.raw[length[0][2]:length[0][1]]) if length is not None else None
        self.connection = self.joined(b"connection") if b"connection" in spans else None
        self.upgrade = self.joined(b"upgrade") if b"upgrade" in spans else None
        # Without Connection (most heads) the version decides: no call for that.
        self.keep_alive = self.version == "1.1" if self.connection is None else \
            _persistent(self.version, self.connection)
        return spans

    def joined(self, name: bytes) -> bytes:
        """The values of a field the scan found, combined (RFC 9110 §5.3)."""
        raw, found = self.raw, self.spans[name]
        if len(found) == 1:
            return raw[found[0][2]:found[0][1]].rstrip(b" \t")
        return b", ".join([raw[value_start:end].rstrip(b" \t") for _, end, value_start in found])


class RequestHead(Head):
    __slots__ = ("method", "target", "host", "framing_line")

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
    __slots__ = ("status", "reason", "plain")

    def body_framing(self, method: bytes, dechunk: bool, rechunk: bool = False):
        """How the response body ends (RFC 9112 §6.3).  `rechunk`: a body that ends at the
        close goes chunked to the client, unless the backend named a transfer coding of its
        own (chunked added after it would be ours to get right, for a rare head)."""
        if method == b"HEAD" or self.status in (204, 304):
            return NO_BODY
        if self.chunked:
            return ChunkedFraming(decode=dechunk)
        if self.content_length is not None:
            return LengthFraming(self.content_length)
        if rechunk and b"transfer-encoding" not in self.spans:
            return RechunkedCloseFraming()
        return CLOSE_FRAMING


make_heads_as(RequestHead, ResponseHead, HOP_BY_HOP)      # what the C answers, where it is built


# The request parser `parse_request` may use next.  llhttp parses a keep-alive stream one
# message after another, so a parser whose message ended (a head with no body, no upgrade,
# persistent) is where a fresh one would be, and is used again.  "Persistent" must be
# llhttp's verdict too, or the parser is left closed: `keep_alive` follows its rule for
# Connection ("close" and "keep-alive" tokens), and llhttp reads Proxy-Connection the same
# way, which we do not, so a head with Proxy-Connection keeps no parser.  Should a reused
# parser refuse a head all the same (a state not foreseen here), the head is judged again by
# a fresh one: one worker-wide parser must never cost another client its request.  Making a
# parser, with its look-ups of the callbacks it never calls, and freeing it was ~1,800 of a
# small request's ~159,900 instructions; with the branch and the store that keep it, the net
# is ~1,100 (0.7 %, callgrind: bench/RESULTS-2026-12-02-day.md).  A head that fails, or
# leaves the parser anywhere else (in a body, after an upgrade or a close), takes its parser
# with it (tests/test_exchange_unit.py: the next head is judged alone after each).
_spare_request_parser = None


def parse_request(raw: bytes, limits) -> RequestHead:
    """`raw` is exactly one complete head (it ends with the first CRLFCRLF)."""
    global _spare_request_parser
    usual = usual_request_head(raw, limits.request_line, limits.header_fields, limits.header_field)
    line_end = raw.find(b"\r\n") if usual is None else usual.line_end
    try:
        if usual is None:
            parts = check_request_line(raw, line_end, limits)
            check_fields(raw, line_end, len(raw), limits)
        parser = _spare_request_parser
        if parser is not None:
            _spare_request_parser = None
            try:
                ended = validate(parser, raw, True)
            except HttpError:
                parser = None             # judged again, below, by a fresh parser
        if parser is None:
            parser, ended = validate_request(REQUEST_PARSER(NO_CALLBACKS), raw)
        if usual is None:
            head = request_head_from(raw, line_end, parts)
        else:
            head = usual
            if head.host and not valid_host(head.host):      # (request_head_from's check, inline)
                raise HttpError(400, "invalid Host header")
    except HttpError as error:
        error.line = raw[:line_end]       # logged as Apache logs a refused request's line (%r)
        raise
    if ended and head.keep_alive and not head.chunked and not head.content_length \
            and b"proxy-connection" not in head.spans:       # no body (has_body, without a call)
        _spare_request_parser = parser
    return head


def parse_response(raw: bytes) -> ResponseHead:
    """`raw` is exactly one complete head (it ends with the first CRLFCRLF)."""
    usual = usual_response_head(raw)
    if usual is not None:
        head, shaped = usual
        if not shaped:              # of a shape llhttp may refuse (_heads_read.c): its verdict first
            validate(RESPONSE_PARSER(NO_CALLBACKS), raw, False)
        return head
    parser = RESPONSE_PARSER(NO_CALLBACKS)
    validate(parser, raw, False)
    return response_head_from(raw, parser)


def request_head_from(raw: bytes, line_end: int, parts: list) -> RequestHead:
    """`parts`: the request line's method, target and version (check_request_line)."""
    head = RequestHead()
    head.raw = raw
    head.line_end = line_end
    head.method, head.target, version = parts
    head.version = _VERSIONS.get(version)
    if head.version is None:
        raise HttpError(505 if version.startswith(b"HTTP/2") else 400,
                        f"unsupported HTTP version {version[:12].decode('latin-1')}")
    hosts = head._scan().get(b"host")
    if head.target[0] != 47 and head.method != b"CONNECT":      # not "/": check_request_line leaves no empty target
        hosts = _authority_as_host(head, hosts)
    if (hosts is not None and len(hosts) > 1) or (hosts is None and head.version == "1.1"):
        raise HttpError(400, "exactly one Host header is required")
    if hosts is None:
        head.host = host = b""
    else:                 # exactly one (above): Head.joined's first case, without the call
        head.host = host = head.raw[hosts[0][2]:hosts[0][1]].rstrip(b" \t")  # (raw may have been rewritten)
    if host and not valid_host(host):
        raise HttpError(400, "invalid Host header")
    head.framing_line = None
    spans = head.spans.get(b"transfer-encoding")
    if spans is not None:
        # Checked whenever the field is there, not only when it ends in chunked: llhttp leaves
        # an upgrade request's framing to us, so "Transfer-Encoding: gzip" on one got through.
        if head.version == "1.0":
            raise HttpError(400, "Transfer-Encoding in an HTTP/1.0 request")
        start, end, value_start = spans[0]
        if len(spans) > 1 or head.raw[start + _TE_NAME_END:end] != b": chunked":
            if not chunked_only(head):
                raise HttpError(501, "Transfer-Encoding other than chunked is not implemented")
            head.framing_line = _CANONICAL_CHUNKED
    elif head.content_length is not None:
        start, end, value_start = head.spans[b"content-length"][0]
        if head.raw[start + _CL_NAME_END:end] != b": %d" % head.content_length:
            head.framing_line = b"\r\nContent-Length: %d" % head.content_length
    # RFC 9110 §7.8: Upgrade in an HTTP/1.0 request is ignored.  So is it on a request with a
    # body (a POST from a client that tries h2c, as curl --http2 and Feign do): forwarded as
    # plain HTTP, body and all, never tunnelled, as HAProxy does since its #1381 (it answered
    # 501; we answered 400).  Nothing can be smuggled: no tunnel opens for it, a 101 is a 502.
    if head.upgrade is not None and (head.connection is None or head.version != "1.1" or head.has_body
                                     or b"upgrade" not in connection_tokens(head.connection)):
        head.upgrade = None
    return head


def _authority_as_host(head: RequestHead, hosts):
    """Make the head's Host the absolute-form target's authority (see the module's comment)."""
    found = absolute_form(head.target)
    if found is None:
        return hosts            # not http(s): routing refuses it (400)
    authority = found[0]
    if not authority or b"@" in authority or not valid_host(authority):
        raise HttpError(400, "invalid authority in the request target")
    if hosts is not None and len(hosts) > 1:
        raise HttpError(400, "exactly one Host header is required")
    if hosts is not None and head.joined(b"host") == authority:
        return hosts
    raw = head.raw
    if hosts is not None:
        start, end, _ = hosts[0]
        raw = raw[:start] + raw[end:]
    line_end = head.line_end
    head.raw = raw = raw[:line_end] + b"\r\nHost: " + authority + raw[line_end:]
    return head._scan().get(b"host")


def response_head_from(raw: bytes, parser) -> ResponseHead:
    """The head in `raw`, which `parser` has validated (whole, or as it arrived: HeadReader)."""
    line_end = raw.find(b"\r\n")
    if not line_end:
        # An empty line first, which llhttp skipped: relayed, it would end the client's head
        # before the status line.  Apache's mod_proxy_http skips one stray CRLF too; a second
        # one ends a head of its own, with no status line (502).
        return _corrected(raw[2:], parser)
    parts = raw[:line_end].split(b" ", 2)
    reason = parts[2] if len(parts) > 2 else b""
    if reason != b"OK" and CONTROL.search(reason) is not None:    # "OK": most heads, no search
        return _corrected(with_standard_reason(raw, parts, line_end, parser.get_status_code()), parser)
    head = ResponseHead()
    head.raw = raw
    head.line_end = line_end
    head.status = status = parser.get_status_code()
    if status < 100:           # llhttp skipped what came before a status line, or saw none
        raise HttpError(502, "malformed status line")
    # llhttp has read "HTTP/x.y" there; its own get_http_version() formats a new string each time.
    head.version = _VERSIONS.get(parts[0]) or parser.get_http_version()
    head.reason = reason
    spans = head._scan()
    # Nothing in it for the proxy to rewrite (unless the exchange asks for more: see
    # response._relay): HTTP/1.1, and no hop-by-hop field.
    head.plain = HOP_BY_HOP.isdisjoint(spans) and parts[0] == b"HTTP/1.1"
    if (status < 200 or status == 204) and (b"content-length" in spans or b"transfer-encoding" in spans):
        return _corrected(without_lines(raw, spans, FRAMING), parser)
    return head


def chunked_only(head) -> bool:
    """The head's Transfer-Encoding values, combined, are the one token "chunked"."""
    tokens = [t.strip(b" \t") for t in head.joined(b"transfer-encoding").lower().split(b",")]
    return [t for t in tokens if t] == [b"chunked"]


def _corrected(raw: bytes, parser) -> ResponseHead:
    """A head whose bytes the proxy corrected (worker.headfixes): never relayed as it came."""
    head = response_head_from(raw, parser)
    head.plain = False
    return head


def _persistent(version: str, connection: bytes | None) -> bool:
    """RFC 9112 §9.3 (llhttp's own answer is not final until the message is)."""
    if connection is None:
        return version == "1.1"
    lower = connection.lower()
    if lower == b"keep-alive":
        return True
    if lower == b"close":
        return False
    tokens = connection_tokens(lower)
    if b"close" in tokens:
        return False
    return version == "1.1" or b"keep-alive" in tokens
