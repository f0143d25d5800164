"""Property-based fuzzing of everything a client can send before a tunnel starts (issue #15,
part 6): the strategies, the backend, and the invariants.  `test_fuzz.py` runs it for about
a minute in the suite; `fuzz_campaign.py` runs it for as long as asked and writes down what
it finds (which then becomes a test in `test_fuzz_regressions.py`).

One example is a byte stream on one connection: one to four requests built from request
lines, targets, header names and values with edge bytes, Content-Length / Transfer-Encoding
combinations (right, wrong, both), chunk sizes with extensions and trailers, Upgrade and
Connection tokens, sent whole or in pieces.  Every request carries `X-Fuzz-Id: N`, so what
reaches the backend can be told apart.

The invariants, checked for every example:
  1. the worker neither dies nor hangs: the connection is answered or closed in time, and
     the worker processes are the ones from the start;
  2. what comes back is a sequence of well-formed HTTP/1.1 responses, one per request served,
     in order, and nothing after one that says `Connection: close`;
  3. a request the proxy answered itself (4xx/5xx of ours) reached no backend;
  4. a WebSocket upgrade the backend accepts (101) carries every byte sent after its head,
     verbatim, to the backend;
  5. differential: what the proxy forwarded, parsed by h11 (an independent parser) at the
     backend, is the method, target, headers and body that the proxy's own parser
     (worker.http1 + worker.framing, run here on the same bytes) read from the client,
     with exactly the proxy's documented rewriting: hop-by-hop fields dropped, Host and
     X-Forwarded-* set, Transfer-Encoding normalised, the absolute-form authority as Host.
"""

from __future__ import annotations

import re
import socket
import threading
import time

import h11
from hypothesis import strategies as st

from conf.model import Limits, Route, Target
from worker.client import EMPTY_LINES_MAX
from worker.framing import BadFraming, ChunkedFraming
from worker.headreader import HeadReader
from worker.http1 import HEAD_END, HttpError, connection_tokens, parse_request
from worker.rewrite import HOP_BY_HOP
from worker.routing import CompiledRoute, origin_form

LIMITS = Limits()
ROUTE = CompiledRoute(Route(Target("http://backend/", None, "/"), path=b"/", preserve_host=True), 10.0,
                      lambda backend: None)
ECHO = "x-fuzz-echo"
_ID = re.compile(rb"(?i)\r\nx-fuzz-id:[ \t]*([0-9]+)[ \t]*\r\n")
_KNOWN = frozenset({b"keep-alive", b"close", b"upgrade"})
_FRAMING = frozenset({b"content-length", b"transfer-encoding"})   # named by Connection, still kept
_REPLACED = {b"host", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"}


# == the backend: h11 on raw sockets, every request recorded by its X-Fuzz-Id ===================
class FuzzBackend:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.complete: dict[int, dict] = {}     # id -> what h11 parsed, body included
        self.tunnels: dict[int, bytes] = {}     # id of a WebSocket upgrade we accepted -> the bytes after it
        self.started: set[int] = set()          # ids whose head arrived (a body may still be cut)
        self.rejected: list[tuple[str, bytes]] = []   # h11 refused what the proxy forwarded
        self.errors: list[str] = []
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self.closing:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        h = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
        raw = bytearray()
        conn.settimeout(30)
        request, body = None, bytearray()
        try:
            while True:
                try:
                    event = h.next_event()
                except h11.RemoteProtocolError as exc:
                    self.rejected.append((str(exc), bytes(raw)))
                    return
                if event is h11.NEED_DATA:
                    data = conn.recv(65536)
                    if not data:         # the proxy closed: mid-message means it gave the request up
                        return
                    raw += data
                    h.receive_data(data)
                elif isinstance(event, h11.Request):
                    request, body = event, bytearray()
                    self.started.add(_fuzz_id(event.headers))
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    fuzz_id = _fuzz_id(request.headers)
                    self.complete[fuzz_id] = {
                        "method": request.method, "target": request.target, "version": request.http_version,
                        "headers": [(k, v) for k, v in request.headers], "body": bytes(body)}
                    if _asks_websocket(request):
                        self._tunnel(conn, h, fuzz_id)
                        return
                    out = h.send(h11.Response(status_code=200, headers=[(ECHO, str(fuzz_id)), ("Content-Length", "2")]))
                    if request.method != b"HEAD":
                        out += h.send(h11.Data(data=b"ok"))
                    conn.sendall(out + h.send(h11.EndOfMessage()))
                    if h.our_state is h11.MUST_CLOSE or h.their_state is h11.MUST_CLOSE:
                        return
                    h.start_next_cycle()
                else:               # ConnectionClosed, PAUSED (an upgrade we answered 200: over)
                    return
        except (OSError, h11.LocalProtocolError) as exc:
            self.errors.append(repr(exc))
            return
        finally:
            conn.close()

    def close(self) -> None:
        self.closing = True
        self.sock.close()


    def _tunnel(self, conn: socket.socket, h: h11.Connection, fuzz_id: int) -> None:
        """Accept the upgrade, then keep every byte that follows until the proxy's EOF."""
        conn.sendall(h.send(h11.InformationalResponse(status_code=101, headers=[
            (ECHO, str(fuzz_id)), ("Upgrade", "websocket"), ("Connection", "Upgrade")])))
        data = bytearray(h.trailing_data[0])
        while chunk := conn.recv(65536):
            data += chunk
        self.tunnels[fuzz_id] = bytes(data)


def _asks_websocket(request) -> bool:
    upgrade = [v for k, v in request.headers if k == b"upgrade"]
    return bool(upgrade) and any(t.strip().lower() == b"websocket" for t in upgrade[0].split(b","))


def _fuzz_id(headers) -> int:
    for name, value in headers:
        if name == b"x-fuzz-id":
            try:
                return int(value)
            except ValueError:
                return -1
    return -1


# == strategies ====================================================================================
TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
EDGE_BYTES = [b"\x00", b"\t", b"\r", b"\n", b" ", b"\x7f", b"\x80", b"\xff", b",", b";", b"\"", b":", b"%",
              b"\x01", b"\x1f", b"/", b"?", b"#", b"..", b"%2e", b"@", b"\\"]
NAMES = ["Host", "Content-Length", "Transfer-Encoding", "Connection", "Upgrade", "Keep-Alive", "TE", "Trailer",
         "Proxy-Connection", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Origin", "Expect",
         "Cookie", "Sec-WebSocket-Key", "Sec-WebSocket-Version", "Accept", "X-Custom", "Via"]


def _case(text: str):
    return st.sampled_from([text, text.lower(), text.upper(), text.swapcase()])


tokens = st.text(TOKEN_CHARS, min_size=1, max_size=12)
edge_text = st.lists(st.one_of(st.sampled_from(EDGE_BYTES), st.binary(min_size=1, max_size=6),
                               tokens.map(str.encode)), max_size=6).map(b"".join)
header_name = st.one_of(st.sampled_from(NAMES).flatmap(_case), tokens).map(str.encode) | \
    st.sampled_from([b"", b"X A", b"X\x00", b"X(A)", b"Host ", b" Host", b"\xff"])
plain_value = st.one_of(tokens.map(str.encode), st.sampled_from([
    b"", b"chunked", b"gzip, chunked", b",chunked", b"chunked ", b"Chunked", b"identity", b"chunked, identity",
    b"close", b"keep-alive", b"Upgrade", b"upgrade, keep-alive", b"close, X-Custom", b"X-Custom, TE",
    b"websocket", b"WebSocket", b"h2c", b"websocket, h2c", b"100-continue", b"0", b"5", b"007", b"-1", b"+5",
    b"18446744073709551616", b"1.2.3.4", b"1.2.3.4, 5.6.7.8", b"t", b"t:80", b"[::1]:80", b"a b", b"a/b"]))
header_value = st.one_of(plain_value, edge_text, plain_value.flatmap(
    lambda v: st.sampled_from([b" " + v, v + b" ", b"\t" + v + b"\t", v + b", " + v])))
separator = st.sampled_from([b": ", b": ", b": ", b":", b":\t", b" : ", b":  "])
line_end = st.sampled_from([b"\r\n"] * 12 + [b"\n", b"\r", b"\r\r\n"])
method = st.one_of(st.sampled_from([b"GET", b"POST", b"PUT", b"HEAD", b"OPTIONS", b"DELETE", b"PATCH", b"TRACE",
                                    b"CONNECT", b"get", b"GE T", b"PRI", b"", b"VERSION-CONTROL", b"FOO_BAR"]), tokens.map(str.encode))
path = st.lists(st.one_of(tokens.map(str.encode), st.sampled_from(EDGE_BYTES)), max_size=5).map(
    lambda parts: b"/" + b"/".join(parts))
target = st.one_of(path, path, path.map(lambda p: b"http://good.example" + p),
                   path.map(lambda p: b"HTTPS://evil:8080" + p), st.sampled_from([
                       b"*", b"t:443", b"ftp://x/", b"http://u@h/", b"http://", b"http://h?q", b"//x", b"", b"?a"]),
                   edge_text)
version = st.sampled_from([b"HTTP/1.1"] * 8 + [b"HTTP/1.0", b"HTTP/2.0", b"http/1.1", b"HTTP/1.2", b"HTTP/1.1 ",
                                               b"HTTP/11", b""])


@st.composite
def chunked_body(draw) -> bytes:
    out = b""
    for _ in range(draw(st.integers(0, 3))):
        data = draw(st.binary(max_size=20))
        size = draw(st.sampled_from([b"%x" % len(data), b"%X" % len(data), b"0%x" % len(data),
                                     b"%x" % (len(data) + 1), b" %x" % len(data), b"%x " % len(data), b"g"]))
        ext = draw(st.one_of(st.sampled_from([b"", b"", b";a=b", b";a", b"; a=\"q\"", b";" + b"x" * 5000,
                                              b";a=\"b\\\"c\"", b" ;a", b";a=", b";=b"]),
                             edge_text.map(lambda t: b";" + t)))
        out += size + ext + draw(line_end) + data + draw(st.sampled_from([b"\r\n"] * 6 + [b"", b"\n", b"xx\r\n"]))
    trailer = draw(st.one_of(st.sampled_from([b"", b"", b"X-T: 1\r\n", b"Bad Trailer\r\n", b"Host: x\r\n",
                                              b"GET http://t/ HTTP/1.1\r\n", b"X T: 1\r\n"]),
                             st.tuples(header_name, header_value).map(lambda f: f[0] + b": " + f[1] + b"\r\n")))
    return out + draw(st.sampled_from([b"0", b"00", b"0;e=1"])) + b"\r\n" + trailer + draw(
        st.sampled_from([b"\r\n"] * 8 + [b"", b"\n"]))


@st.composite
def request(draw, fuzz_id: int) -> bytes:
    """One request: mostly valid enough to get somewhere, with one or two things off."""
    line = draw(method) + b" " + draw(target) + b" " + draw(version)
    if draw(st.integers(0, 9)) == 0:
        line = draw(st.sampled_from([b"GET  / HTTP/1.1", b"GET /\tHTTP/1.1", b" GET / HTTP/1.1",
                                     b"GET / HTTP/1.1\x00", b"\r\nGET / HTTP/1.1", b"GET /"]))
    fields = draw(st.lists(st.tuples(header_name, separator, header_value), max_size=6))
    hosts = draw(st.sampled_from([[b"t"]] * 6 + [[], [b"t", b"u"], [b"t:80"], [b"bad host"], [b"good.example"]]))
    fields += [(b"Host", b": ", host) for host in hosts]
    framing = draw(st.sampled_from(["none", "none", "length", "length", "chunked", "chunked", "wrong-length",
                                    "both", "te-odd", "upgrade", "upgrade"]))
    body = b""
    if framing == "upgrade":        # what follows the head (the next requests too) is the tunnel's
        fields.append((b"Upgrade", b": ", draw(st.sampled_from([b"websocket", b"WebSocket", b"websocket, h2c",
                                                                  b"h2c", b"websocket/13", b""]))))
        fields.append((b"Connection", b": ", draw(st.sampled_from([b"Upgrade", b"upgrade, keep-alive", b"keep-alive",
                                                                     b"close, upgrade", b"Upgrade, X-Custom"]))))
        fields.append((b"Sec-WebSocket-Key", b": ", b"dGhlIHNhbXBsZSBub25jZQ=="))
    if framing in ("length", "wrong-length", "both"):
        body = draw(st.binary(max_size=40))
        length = len(body) if framing != "wrong-length" else draw(st.sampled_from([0, max(len(body) - 1, 0)]))
        fields.append((b"Content-Length", b": ", b"%d" % length))
    if framing in ("chunked", "both", "te-odd"):
        body = draw(chunked_body())
        coding = b"chunked" if framing != "te-odd" else draw(plain_value)
        fields.append((b"Transfer-Encoding", b": ", coding))
    fields.append((b"X-Fuzz-Id", b": ", b"%010d" % fuzz_id))     # made unique when run (`stamp`)
    order = draw(st.permutations(range(len(fields))))
    ending = draw(line_end)
    head = line + b"".join(ending + fields[i][0] + fields[i][1] + fields[i][2] for i in order)
    return head + draw(st.sampled_from([b"\r\n\r\n"] * 10 + [b"\n\n", b"\r\n\n", b"\r\n"])) + body


@st.composite
def example(draw) -> tuple[bytes, list[int]]:
    """(the bytes of one connection, where to cut them into writes)."""
    count = draw(st.integers(1, 4))
    stream = b"".join(draw(request(i)) for i in range(count))
    cuts = sorted(draw(st.lists(st.integers(1, max(len(stream) - 1, 1)), max_size=3, unique=True))) \
        if draw(st.booleans()) else []
    return stream, cuts


# == the model: what the proxy's own parser reads from the same bytes ================================
class Expected:
    """One request as the proxy parses it (or the refusal that stops the stream)."""

    def __init__(self, head=None, body: bytes = b"", refused: str | None = None, raw: bytes = b"",
                 tunnel: bytes | None = None):
        self.head, self.body, self.refused, self.raw = head, body, refused, raw
        self.tunnel = tunnel                 # a WebSocket upgrade: the bytes after its head, for the backend
        self.fuzz_id = _raw_id(raw)


def _raw_id(raw: bytes) -> int | None:
    m = _ID.search(raw)
    return int(m.group(1)) if m else None


def model(stream: bytes) -> tuple[list[Expected], bool]:
    """The requests the proxy reads, in order, and whether the stream ends inside one."""
    found, pos = [], 0
    while pos < len(stream):
        skipped = 0       # empty lines before a request line are skipped, up to a bound (RFC 9112 §2.2)
        while stream.startswith(b"\r\n", pos) and skipped < EMPTY_LINES_MAX:
            pos, skipped = pos + 2, skipped + 1
        if pos >= len(stream):
            break
        end = stream.find(HEAD_END, pos)
        if end < 0:      # the proxy feeds an unfinished head to llhttp as it comes: garbage is refused now
            try:
                HeadReader(True, LIMITS).feed(bytearray(stream[pos:]))
            except HttpError as exc:
                found.append(Expected(refused=f"{exc.status} {exc.message}", raw=stream[pos:]))
                return found, False
            return found, True
        raw = stream[pos:end + 4]
        try:
            head = parse_request(raw, LIMITS)
        except HttpError as exc:
            found.append(Expected(refused=f"{exc.status} {exc.message}", raw=raw))
            return found, False
        pos = end + 4
        upgrade = ROUTE.upgrade_header(head)
        if upgrade is not None and any(t.strip().lower() == b"websocket" for t in upgrade.split(b",")):
            # The backend switches: everything after this head is the tunnel's.
            found.append(Expected(head, raw=raw, tunnel=stream[pos:]))
            return found, False
        framing = head.body_framing()
        body = b""
        if framing is not None:
            if head.chunked:
                framing = ChunkedFraming(decode=True)
            try:
                stop = framing.feed(stream, pos, len(stream))
            except BadFraming as exc:
                found.append(Expected(head, refused=f"400 {exc}", raw=raw))
                return found, False
            if stop < 0:
                found.append(Expected(head, raw=raw))
                return found, True
            body = framing.data_of(stream) if head.chunked else stream[pos:stop]
            pos = stop
        found.append(Expected(head, body, raw=raw))     # an upgrade too: the backend answers 200
    return found, False


def expected_fields(head) -> list[tuple[bytes, bytes]]:
    """The end-to-end fields the backend must see, in order (what rewriting keeps)."""
    named = set()
    if head.connection is not None:
        named = connection_tokens(head.connection.lower()) - _KNOWN - _FRAMING
    drop = HOP_BY_HOP | _REPLACED | named
    if head.framing_line is not None:
        drop = drop | {b"transfer-encoding", b"content-length"}
    kept = []
    for line in head.raw[head.line_end + 2:-4].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() not in drop:
            kept.append((name.lower(), value.strip(b" \t")))
    if head.framing_line is not None:
        name, _, value = head.framing_line[2:].partition(b": ")
        kept.append((name.lower(), value))
    return kept


# == responses: a strict reader ======================================================================
_STATUS = re.compile(rb"HTTP/1\.1 ([1-5][0-9][0-9]) [\t\x20-\x7e\x80-\xff]*")
_FIELD = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([\t\x20-\x7e\x80-\xff]*?)[ \t]*")


class Malformed(AssertionError):
    pass


def read_responses(data: bytes, methods: list[bytes]) -> list[dict]:
    """Every response in `data`, strictly; raises Malformed.  `methods`: of the requests, in
    order (a response to HEAD has no body)."""
    responses, pos = [], 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            raise Malformed(f"a response head without its end: {data[pos:pos + 200]!r}")
        lines = data[pos:end].split(b"\r\n")
        status = _STATUS.fullmatch(lines[0])
        if status is None:
            raise Malformed(f"bad status line {lines[0][:100]!r}")
        fields = []
        for line in lines[1:]:
            m = _FIELD.fullmatch(line)
            if m is None:
                raise Malformed(f"bad response field line {line[:100]!r}")
            fields.append((m.group(1).lower(), m.group(2)))
        names = [name for name, _ in fields]
        pos = end + 4
        code = int(status.group(1))
        method = methods[len(responses)] if len(responses) < len(methods) else b"?"
        if names.count(b"content-length") > 1 or (b"content-length" in names and b"transfer-encoding" in names):
            raise Malformed(f"ambiguous framing in {fields!r}")
        body_allowed = method != b"HEAD" and code not in (204, 304) and code >= 200
        length = dict(fields).get(b"content-length")
        if not body_allowed:
            pass
        elif length is not None:
            if not length.isdigit() or pos + int(length) > len(data):
                raise Malformed(f"Content-Length {length!r} and {len(data) - pos} bytes")
            pos += int(length)
        elif b"transfer-encoding" in names:
            raise Malformed("a chunked response where none was expected")
        else:
            pos = len(data)              # read until close
        responses.append({"status": code, "fields": fields, "echo": dict(fields).get(ECHO.encode()),
                          "close": (b"connection", b"close") in [(n, v.lower()) for n, v in fields]})
        if code == 101:
            if pos < len(data):              # our backend sends nothing through the tunnel
                raise Malformed(f"{len(data) - pos} bytes after a 101")
            break
        if responses[-1]["close"] and pos < len(data):
            raise Malformed(f"{len(data) - pos} bytes after a response that said Connection: close")
    return responses


# == one example, end to end =============================================================================
SILENCE = 1.5      # seconds without a byte before we stop waiting for answers the model did not foresee


def exchange(port: int, stream: bytes, cuts: list[int], expect_answers: int, timeout: float = 8.0) -> tuple[bytes, bool]:
    """Send `stream` in writes split at `cuts`; read until `expect_answers` responses could be
    there (or SILENCE), then half-close and read to the end.  (answer, closed in time)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    deadline = time.monotonic() + timeout
    data = bytearray()
    try:
        start = 0
        try:
            for cut in [*cuts, len(stream)]:
                sock.sendall(stream[start:cut])
                start = cut
                if cut != len(stream):
                    time.sleep(0.002)
        except (BrokenPipeError, ConnectionResetError):
            pass
        half_closed = False
        while True:
            if not half_closed and data.count(b"HTTP/1.1 ") >= expect_answers:
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                half_closed = True
            left = deadline - time.monotonic()
            if left <= 0:
                return bytes(data), False
            sock.settimeout(min(left, SILENCE if not half_closed else left))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                if not half_closed:            # waiting for a head or a body that never comes
                    try:
                        sock.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    half_closed = True
                continue
            except ConnectionResetError:
                return bytes(data), True
            if not chunk:
                return bytes(data), True
            data += chunk
    finally:
        sock.close()


_STAMP = re.compile(rb"X-Fuzz-Id: ([0-9]{10})")
_RUNS = iter(range(10, 1 << 40, 10))


def stamp(stream: bytes) -> bytes:
    """Give this run's requests ids never used before (same width: the cuts stay where they were)."""
    base = next(_RUNS)
    return _STAMP.sub(lambda m: b"X-Fuzz-Id: %010d" % (base + int(m.group(1))), stream)


def check(port: int, backend: FuzzBackend, stream: bytes, cuts: list[int]) -> None:
    """Run one example and assert every invariant; AssertionError says which and shows the bytes."""
    stream = stamp(stream)
    expected, incomplete = model(stream)
    rejected = len(backend.rejected)
    answer, in_time = exchange(port, stream, cuts, len(expected))
    assert in_time, f"no answer and no close in time (a hang?): sent {stream!r}, got {answer!r}"
    methods = [e.head.method if e.head is not None else b"?" for e in expected]
    try:
        responses = read_responses(answer, methods)
    except Malformed as exc:
        raise AssertionError(f"malformed response: {exc}; sent {stream!r}, got {answer!r}") from None
    assert len(responses) <= len(expected), f"more responses than requests: sent {stream!r}, got {answer!r}"
    if not incomplete and (not responses or not responses[-1]["close"]):
        assert len(responses) == len(expected), \
            f"{len(expected)} requests, {len(responses)} answers and no close: sent {stream!r}, got {answer!r}"
    for index, response in enumerate(responses):
        want = expected[index]
        if response["echo"] is None:                          # the proxy answered it
            assert response["status"] >= 400, f"a {response['status']} of ours? sent {stream!r}, got {answer!r}"
            if want.fuzz_id is not None:
                assert want.fuzz_id not in backend.complete, \
                    f"request {want.fuzz_id} was answered {response['status']} by the proxy but reached the " \
                    f"backend whole: sent {stream!r}"
            continue
        assert want.refused is None, \
            f"the proxy's parser refuses request {index} ({want.refused}) but a backend answered it: sent {stream!r}"
        if want.fuzz_id is None:      # an edge value ended the head before its X-Fuzz-Id: nothing to compare
            assert response["echo"] == b"-1", f"response {index} answers another request: sent {stream!r}"
            continue
        assert int(response["echo"]) == want.fuzz_id, f"response {index} answers another request: sent {stream!r}"
        _differential(backend, want, stream)
        if response["status"] == 101:
            assert want.tunnel is not None, f"a 101 the model did not expect: sent {stream!r}"
            got = backend.tunnels.get(want.fuzz_id)
            assert got == want.tunnel, f"the tunnel carried {got!r}, not {want.tunnel!r}: sent {stream!r}"
    assert len(backend.rejected) == rejected, \
        f"h11 rejected what the proxy forwarded: {backend.rejected[-1]!r}; sent {stream!r}"


def _differential(backend: FuzzBackend, want: Expected, stream: bytes) -> None:
    got = backend.complete.get(want.fuzz_id)
    assert got is not None, f"answered by the backend but not recorded: {want.fuzz_id}"
    head = want.head
    where = f"request {want.fuzz_id}: sent {stream!r}"
    assert got["method"] == head.method, f"method {got['method']!r} != {head.method!r}; {where}"
    target = head.target if head.target[:1] == b"/" else origin_form(head.target)
    assert got["target"] == target, f"target {got['target']!r} != {target!r}; {where}"
    assert got["version"].decode() == head.version, f"version {got['version']!r} != {head.version}; {where}"
    headers = got["headers"]
    upgrade = ROUTE.upgrade_header(head)
    skip = _REPLACED | ({b"upgrade", b"connection"} if upgrade is not None else set())
    end_to_end = [(k, v.lower() if k == b"transfer-encoding" else v) for k, v in headers if k not in skip]
    wanted = [(k, v.lower() if k == b"transfer-encoding" else v) for k, v in expected_fields(head)]
    if head.version == "1.0" and upgrade is None:     # asked of the backend for its pooling (worker.rewrite)
        wanted.insert(0, (b"connection", b"keep-alive"))
    assert end_to_end == wanted, f"fields {end_to_end!r} != {wanted!r}; {where}"
    values = {k: v for k, v in headers}
    host = head.host or b"127.0.0.1:%d" % backend.port         # none (HTTP/1.0): the backend's own
    assert values.get(b"host") == host, f"Host {values.get(b'host')!r} != {host!r}; {where}"
    prior = head.joined(b"x-forwarded-for") + b", " if b"x-forwarded-for" in head.spans else b""
    assert values.get(b"x-forwarded-for") == prior + b"127.0.0.1", f"X-Forwarded-For {values!r}; {where}"
    if upgrade is not None:
        assert values.get(b"upgrade") == upgrade, f"Upgrade {values.get(b'upgrade')!r} != {upgrade!r}; {where}"
    assert got["body"] == want.body, f"body {got['body']!r} != {want.body!r}; {where}"
