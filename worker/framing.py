"""Where a message body ends: Content-Length, chunked, or the connection's close.

Bodies are relayed as they are, chunked framing included (both sides speak HTTP/1.1),
so a framing object only *scans*: `feed(buf, pos, end)` looks at `buf[pos:end]` and
returns the offset just past the body's last byte when the body ends inside that span,
or -1 when all of it belongs to the body and more is to come.  `wanted(size)` caps a
read at one byte past a Content-Length body: a byte there says something follows the body
(the next pipelined request; from a backend, bytes no response owns, so its connection is
not reused: they would answer the next request on it).  `opaque()` says how many of the
next bytes are body data the scan need not see (what may be spliced).

Each framing answers for itself what the exchange asks of it (no class tests):
`close_delimited` (the body ends with the connection, which then cannot be reused),
`finished` (nothing left to read), `over(limit)` (LimitRequestBody), `reframes` (what is
relayed is not what was read: then `data_of(buf)` gives the bytes to relay from what was
just fed, the data alone when de-chunking, chunks when re-chunking), `splices_chunks` (spliced
all the same, each read framed as a chunk), `last_chunk` (what the client is sent when a
read-until-close body ends).

The chunked scanner is strict (RFC 9112 §7.1): hex sizes only, extensions as the grammar
says, CRLF line ends, a CRLF after each chunk's data, bounded size lines, trailers that are
field lines; anything else raises
`BadFraming`, which the caller answers with 400 (request) or 502 (response).
"""

from __future__ import annotations

import re

_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")
_PLAIN_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]{1,15})\r\n")    # no extension: most size lines
_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
# RFC 9112 §7.1.1: *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )
_EXTENSIONS = re.compile(rb"(?:[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN
                         + rb'|"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"))?)*')
_TRAILER_LINE = re.compile(_TOKEN + rb":[\t \x21-\x7e\x80-\xff]*")     # a field line, as in a head
# Fields that frame, route or manage the connection have no meaning in a trailer section (RFC
# 9110 §6.5.1) and are refused there: a recipient that merged trailers into the head (h11
# rejects them; others may not) would take a body length or a Host from after the body.  So are
# the forwarding fields, which mpm writes itself in the head and a client's own copies of are
# dropped there (worker.rewrite): in a trailer they would reach the backend as the client wrote
# them (review 2026-12-03-http1 #10).  Relayed bodies are not rewritten, so they cannot be
# dropped as in the head: 400 (a response trailer with them: 502), as for a Host there; no
# client writes them after a body.  nginx and Apache forward no request trailers at all.
# X-Forwarded-For, -Proto and -Host in every spelling with "_" for a "-" too: CGI, WSGI, PHP and
# Rack read both as one (worker.http1 finds them in heads, worker.rewrite drops them there).
FORWARDING_SPELLINGS = frozenset(b"x%sforwarded%s%s" % (a, b, name) for a in (b"-", b"_") for b in (b"-", b"_")
                                 for name in (b"for", b"proto", b"host"))
_NOT_IN_TRAILERS = frozenset({b"content-length", b"transfer-encoding", b"host", b"connection", b"keep-alive",
                              b"te", b"trailer", b"upgrade", b"proxy-connection", b"forwarded"}) | FORWARDING_SPELLINGS
# So are the fields that name a verified client certificate (worker.clientcert), with `_` for
# any `-` of theirs: CGI, WSGI, PHP and Rack read both as `_`, so a backend that trusts
# X-SSL-Client-Verify trusts X_SSL_Client_Verify too (review 2026-12-04 #1, #2).
CLIENT_CERT_FIELD = re.compile(rb"x[-_]ssl[-_]client[-_]", re.IGNORECASE)
MAX_LINE = 4096           # a chunk-size line, extensions included
MAX_TRAILERS = 16 * 1024  # all trailer lines together


class BadFraming(Exception):
    pass


class LengthFraming:
    __slots__ = ("remaining",)
    close_delimited = False
    reframes = False
    splices_chunks = False

    def __init__(self, length: int):
        self.remaining = length

    @property
    def finished(self) -> bool:
        return self.remaining == 0

    def wanted(self, size: int) -> int:
        return self.remaining + 1 if self.remaining < size else size    # +1: see the module docstring

    def opaque(self) -> int:
        return self.remaining

    def over(self, limit: int) -> bool:
        return False          # checked against the head's Content-Length up front

    def feed(self, buf, pos: int, end: int) -> int:
        n = end - pos
        if n < self.remaining:
            self.remaining -= n
            return -1
        stop = pos + self.remaining
        self.remaining = 0
        return stop


class CloseFraming:
    """Read-until-close (a response with neither Content-Length nor chunked)."""

    __slots__ = ()
    close_delimited = True
    reframes = False
    splices_chunks = False
    finished = False
    last_chunk = b""

    def wanted(self, size: int) -> int:
        return size

    def opaque(self) -> int:
        return 1 << 62

    def over(self, limit: int) -> bool:
        return False

    def feed(self, buf, pos: int, end: int) -> int:
        return -1


CLOSE_FRAMING = CloseFraming()


class RechunkedCloseFraming(CloseFraming):
    """A read-until-close body relayed chunked to an HTTP/1.1 client, as nginx and Apache
    relay it: the client can then tell the end (the last chunk) from a cut (a backend reset
    or a TLS backend's missing close_notify reaches it as a body without its last chunk),
    and its connection outlives the backend's.  Each read becomes one chunk."""

    __slots__ = ("span",)
    reframes = True
    splices_chunks = True     # spliced, a read is one chunk: its size line and CRLF sent around it
    last_chunk = b"0\r\n\r\n"

    def __init__(self) -> None:
        self.span = (0, 0)

    def feed(self, buf, pos: int, end: int) -> int:
        self.span = (pos, end)
        return -1

    def data_of(self, buf) -> bytes:
        """What the last `feed` passed over, as one chunk."""
        pos, end = self.span
        return b"%x\r\n%b\r\n" % (end - pos, buf[pos:end])


_SIZE, _DATA, _DATA_END, _TRAILER, _END = range(5)


class ChunkedFraming:
    """With `decode=True` the scan also records the data spans of each fed range, so the
    body can be relayed de-chunked (to an HTTP/1.0 client, or as HTTP/2 DATA): see
    `data_of`; and the trailer lines (`trailers`: HTTP/2 sends them as a HEADERS frame)."""

    __slots__ = ("state", "remaining", "partial", "trailer_bytes", "spans", "data_bytes", "trailers")
    close_delimited = False
    splices_chunks = False

    def __init__(self, decode: bool = False) -> None:
        self.state = _SIZE
        self.remaining = 0
        self.partial = b""       # a line cut by the end of a read
        self.trailer_bytes = 0
        self.data_bytes = 0      # the body without its framing (what LimitRequestBody counts)
        self.spans: list | None = [] if decode else None
        self.trailers: list | None = [] if decode else None

    @property
    def finished(self) -> bool:
        return self.state == _END

    @property
    def reframes(self) -> bool:
        return self.spans is not None

    def wanted(self, size: int) -> int:
        return size

    def opaque(self) -> int:
        return self.remaining if self.state == _DATA else 0

    def over(self, limit: int) -> bool:
        return self.data_bytes > limit

    def data_of(self, buf) -> bytes:
        """The chunk data among what the last `feed` passed over (de-chunking)."""
        data = b"".join(buf[start:stop] for start, stop in self.spans)
        self.spans.clear()
        return data

    def feed(self, buf, pos: int, end: int) -> int:
        while pos < end:
            if self.state == _DATA:
                take = end - pos
                if take < self.remaining:
                    self.remaining -= take
                    self.data_bytes += take
                    if self.spans is not None:
                        self.spans.append((pos, end))
                    return -1
                if self.spans is not None:
                    self.spans.append((pos, pos + self.remaining))
                self.data_bytes += self.remaining
                pos += self.remaining
                self.remaining = 0
                self.state = _DATA_END
                continue
            if not self.partial:
                # The usual lines, matched in place (no copy, no call): the CRLF after a chunk's
                # data, a size line without extensions.  A body of tiny chunks is mostly these.
                if self.state == _DATA_END:
                    if pos + 2 <= end and buf[pos:pos + 2] == b"\r\n":
                        pos += 2
                        self.state = _SIZE
                        continue
                elif self.state == _SIZE:
                    size_line = _PLAIN_SIZE_LINE.match(buf, pos, end)
                    if size_line is not None:
                        pos = size_line.end()
                        self.remaining = int(size_line[1], 16)
                        self.state = _DATA if self.remaining else _TRAILER
                        continue
            newline = buf.find(b"\n", pos, end)
            if newline < 0:
                self.partial += bytes(buf[pos:end])
                if len(self.partial) > MAX_LINE:
                    raise BadFraming("chunk line too long")
                return -1
            line = self.partial + bytes(buf[pos:newline + 1]) if self.partial else bytes(buf[pos:newline + 1])
            self.partial = b""
            pos = newline + 1
            self._line(line)
            if self.state == _END:
                return pos
        return -1

    def _line(self, line: bytes) -> None:
        if len(line) > MAX_LINE:
            raise BadFraming("chunk line too long")
        if not line.endswith(b"\r\n") or b"\r" in line[:-2]:
            raise BadFraming("chunk line must end with CRLF")
        line = line[:-2]
        if self.state == _SIZE:
            size_text, semicolon, extensions = line.partition(b";")
            if not _HEX.fullmatch(size_text):
                raise BadFraming(f"bad chunk size {size_text[:20]!r}")
            if semicolon and not _EXTENSIONS.fullmatch(line, len(size_text)):
                raise BadFraming("bad chunk extension")
            self.remaining = int(size_text, 16)
            self.state = _DATA if self.remaining else _TRAILER
        elif self.state == _DATA_END:
            if line:
                raise BadFraming("chunk data longer than its size")
            self.state = _SIZE
        elif not line:          # _TRAILER: the empty line ends the body
            self.state = _END
        else:
            self.trailer_bytes += len(line)
            # A trailer must be a field line: "GET http://x/ HTTP/1.1" has a colon too, and a
            # peer that stops the body at "0\r\n" would read it as the next request.
            if self.trailer_bytes > MAX_TRAILERS or not _TRAILER_LINE.fullmatch(line):
                raise BadFraming("bad or oversized trailer")
            name = line.partition(b":")[0]
            if name.lower() in _NOT_IN_TRAILERS or CLIENT_CERT_FIELD.match(name):
                raise BadFraming(f"{name[:30].decode('latin-1')} in a trailer section")
            if self.trailers is not None:
                self.trailers.append(line)


class NoBody:
    """HEAD responses, 204, 304."""

    __slots__ = ()
    close_delimited = False
    reframes = False
    splices_chunks = False
    finished = True

    def wanted(self, size: int) -> int:
        return 0

    def opaque(self) -> int:
        return 0

    def over(self, limit: int) -> bool:
        return False

    def feed(self, buf, pos: int, end: int) -> int:
        return pos


NO_BODY = NoBody()
