"""The compiled head scan (worker/_heads.c) against its reference, the regular expression in
worker.headscan (`scan_in_python`): the same lower-cased bytes and the same spans, in the same
order, for random heads and for the fuzz suite's requests.  No sockets: both are functions of
the bytes alone.  The suite itself runs on the compiled scan, and CI runs the HTTP modules once
more with MPM_NATIVE_HEADS=0, so the reference stays proven against real traffic too."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import fuzz_http
from worker import headscan, http1
from worker.authority import valid_host
from worker.framing import FORWARDING_SPELLINGS

_heads = pytest.importorskip("worker._heads", reason="the compiled head scan is not built here")
if not headscan.NATIVE:        # MPM_NATIVE_HEADS=0: the worker does not use the C, these tests still do
    _heads.set_names(tuple(headscan.FIELDS) + tuple(FORWARDING_SPELLINGS - set(headscan.FIELDS)))
    _heads.set_head_types(http1.RequestHead, headscan.REQUEST_SLOTS, http1.ResponseHead, headscan.RESPONSE_SLOTS,
                          tuple(sorted(http1.HOP_BY_HOP)))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = sorted(headscan.FIELDS) + sorted(FORWARDING_SPELLINGS) + [
    b"hosts", b"x-host", b"content-type", b"x-forwarded-fo", b"x_forwarded_protocol", b"t", b"tee", b"x-foo", b""]
PIECES = [b"\r\n", b"\n", b"\r", b":", b" ", b"\t", b"\x00", b"\xff", b",", b"chunked", b"close", b"5", b"a"]


@st.composite
def mangled_case(draw, name: bytes) -> bytes:
    flips = draw(st.integers(0, (1 << len(name)) - 1))
    return bytes(c - 32 if flips >> i & 1 and 97 <= c <= 122 else c for i, c in enumerate(name))


@st.composite
def head(draw) -> bytes:
    """A start line, field lines whose names are (or nearly are) the ones scanned for, in any
    case, with any separators and stray bytes: most are not valid HTTP, which the scan must
    read exactly as the regular expression does all the same."""
    parts = [draw(st.sampled_from([b"GET / HTTP/1.1", b"HTTP/1.1 200 OK", b"", b"\n", b"x"]))]
    for _ in range(draw(st.integers(0, 8))):
        parts.append(draw(st.sampled_from([b"\r\n", b"\n", b"\r\n\r\n", b""])))
        parts.append(draw(mangled_case(draw(st.sampled_from(NAMES)))))
        parts.append(draw(st.sampled_from([b":", b": ", b":\t \t", b" :", b"", b"::"])))
        parts.append(b"".join(draw(st.lists(st.sampled_from(PIECES), max_size=6))))
    parts.append(draw(st.sampled_from([b"\r\n\r\n", b"\r\n", b"", b"\n"])))
    return b"".join(parts)


def _same(raw: bytes) -> None:
    lower, spans = _heads.scan(raw)
    want_lower, want_spans = headscan.scan_in_python(raw)
    assert lower == want_lower
    assert spans == want_spans
    assert list(spans) == list(want_spans)          # the same order (rewrite keeps it)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(head())
def test_the_scan_finds_what_the_regular_expression_finds(raw):
    _same(raw)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(fuzz_http.example())
def test_the_scan_reads_the_fuzz_suites_requests_alike(example):
    stream, _ids = example
    _same(stream)
    for piece in stream.split(b"\r\n\r\n"):
        _same(piece + b"\r\n\r\n")


@pytest.mark.parametrize("raw", [
    b"",
    b"\n",
    b"\nhost:",
    b"\nHost: a\nTE: x\r\n\r\n",             # a bare LF inside a value: the value runs over it
    b"GET / HTTP/1.1\r\nHOST:\t a \t\r\nX_Forwarded-PROTO: https\r\nHost: b\r\n\r\n",
    b"GET / HTTP/1.1\r\nTE:trailers\r\nTrailer:x\r\nTransfer-Encoding: chunked\r\n\r\n",
    bytes(range(256)) + b"\r\nhost: \x80\xff\r\n\r\n",
])
def test_edge_heads(raw):
    _same(raw)


def test_the_names_are_the_ones_set():
    """The scan looks for exactly worker.http1's names: a field outside them is not filed."""
    lower, spans = _heads.scan(b"GET / HTTP/1.1\r\nCookie: a\r\nHost: h\r\n\r\n")
    assert spans == {b"host": [(25, 34, 33)]}
    with pytest.raises(TypeError):
        _heads.scan("text")


# == the usual heads read whole in C (`request`, `response`) against worker.http1's Python =========
LIMITS = [(8190, 100, 8190), (20, 2, 30), (40, 1, 12)]
VALUES = [b"chunked", b"close", b"keep-alive", b"Keep-Alive", b"upgrade", b"5", b"005", b"18446744073709551616",
          b"1234567890123456789", b"gzip", b", ", b",", b" ", b"\t", b"a", b"example.com", b"[::1]:80", b"a b"]
REQUEST_LINES = [b"GET / HTTP/1.1", b"GET /small HTTP/1.0", b"POST /a?b HTTP/1.1", b"GET  / HTTP/1.1",
                 b"GET http://a/ HTTP/1.1", b"GET / HTTP/1.2", b"GET / HTTP/2.0", b"get / HTTP/1.1", b"OPTIONS * HTTP/1.1",
                 b"GET / HTTP/1.1 ", b" GET / HTTP/1.1", b"GET /" + b"x" * 30 + b" HTTP/1.1", b"BREW-IT / HTTP/1.1"]
STATUS_LINES = [b"HTTP/1.1 200 OK", b"HTTP/1.0 200 OK", b"HTTP/1.1 204 No Content", b"HTTP/1.1 304 ", b"HTTP/1.1 304 ",
                b"HTTP/1.1 101 Switching", b"HTTP/1.1 100 Continue", b"HTTP/1.1 200", b"HTTP/1.1 503 A\x01B",
                b"HTTP/1.1 404 Not\tFound", b"HTTP/1.1 200 \x7f", b"HTTP/1.1 2000 OK", b"HTTP/1.1 099 X"]


def _slots(head) -> dict:
    names = [name for cls in type(head).__mro__ for name in getattr(cls, "__slots__", ())]
    return {name: getattr(head, name, "<unset>") for name in names}


def _outcome(read):
    try:
        return _slots(read())
    except http1.HttpError as error:
        return ("refused", error.status, error.message)


FIELD_VALUES = {
    b"host": [b"example.com", b"127.0.0.1:8080", b"[::1]:80", b"bad host", b"", b"a@b", b"a:b:c"],
    b"content-length": [b"0", b"5", b"42", b"10", b"005", b"12 ", b"1234567890123456789", b"18446744073709551615", b"", b"+5"],
    b"transfer-encoding": [b"chunked", b"gzip, chunked", b"chunked, gzip", b"xchunked", b"chunkedx", b"CHUNKED",
                           b" , chunked", b"chunked,", b"", b"gzip"],
    b"connection": [b"close", b"keep-alive", b"Keep-Alive", b"upgrade", b"close, te", b"x-foo", b"", b"CLOSE",
                    b"close, X-Foo"],     # (a field it names goes: rewrite.request_head leaves C for that)
    b"upgrade": [b"websocket", b"h2c"],
}


@st.composite
def field(draw) -> bytes:
    name = draw(st.sampled_from(list(FIELD_VALUES) * 3 + NAMES[:-1]))
    if name in FIELD_VALUES and draw(st.integers(0, 4)):
        value = draw(st.sampled_from(FIELD_VALUES[name]))
    else:
        value = b"".join(draw(st.lists(st.sampled_from(VALUES), min_size=0, max_size=3)))
    return (draw(mangled_case(name)) + draw(st.sampled_from([b": "] * 6 + [b":", b":  ", b":\t"])) + value
            + draw(st.sampled_from([b""] * 8 + [b" ", b"\t "])))


@st.composite
def clean_head(draw, start_lines, host_first: bool = False) -> bytes:
    """Heads of valid bytes, most of which llhttp takes: what the fast paths must read right."""
    lines = [draw(st.sampled_from(start_lines[:3] * 4 + start_lines))]      # the usual ones more often
    if host_first and draw(st.integers(0, 5)):
        lines.append(b"Host: " + draw(st.sampled_from(FIELD_VALUES[b"host"][:3])))
    lines += draw(st.lists(field(), max_size=5))
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _same_request(raw: bytes, limits: tuple) -> None:
    usual = _heads.request(raw, *limits)
    if usual is None:
        return
    bounds = type("Limits", (), dict(zip(("request_line", "header_fields", "header_field"), limits, strict=True)))
    line_end = raw.find(b"\r\n")
    parts = http1.check_request_line(raw, line_end, bounds)       # within the limits, or no fast path
    http1.check_fields(raw, line_end, len(raw), bounds)
    reference = _outcome(lambda: http1.request_head_from(raw, line_end, parts))
    if reference == ("refused", 400, "invalid Host header"):
        assert not valid_host(usual.host)       # the C leaves that check to parse_request
    else:
        assert _slots(usual) == reference


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(clean_head(REQUEST_LINES, host_first=True), st.sampled_from(LIMITS))
def test_a_usual_request_reads_as_the_python_reads_it(raw, limits):
    _same_request(raw, limits)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(fuzz_http.example(), st.sampled_from(LIMITS))
def test_the_fuzz_suites_requests_read_alike(example, limits):
    stream, _ids = example
    for piece in stream.split(b"\r\n\r\n"):
        _same_request(piece + b"\r\n\r\n", limits)


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(clean_head(STATUS_LINES))
def test_a_usual_response_reads_as_the_python_reads_it(raw):
    usual = _heads.response(raw)
    if usual is None:
        return
    parser = http1.RESPONSE_PARSER(http1.NO_CALLBACKS)
    try:
        http1.validate(parser, raw, False)
    except http1.HttpError:
        return           # never read: parse_response asks llhttp first
    assert _slots(usual[0]) == _outcome(lambda: http1.response_head_from(raw, parser))


def test_the_fast_paths_take_the_usual_heads():
    """What the bench and most traffic send is read in C (else the tests above prove nothing)."""
    assert _heads.request(b"GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 8190, 100, 8190) is not None
    assert _heads.request(b"POST / HTTP/1.0\r\nConnection: Keep-Alive\r\nContent-Length: 5\r\n\r\n",
                          8190, 100, 8190) is not None
    assert _heads.response(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\n") is not None
    assert _heads.response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n") is not None
    for unusual in (b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n",
                    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 05\r\n\r\n",
                    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"):
        assert _heads.request(unusual, 8190, 100, 8190) is None
    assert _heads.response(b"HTTP/1.1 100 Continue\r\n\r\n") is None


# == the head toward the backend put together in C (`joined_head`) against worker.rewrite's Python ===
@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(clean_head(REQUEST_LINES, host_first=True), st.sampled_from([None, b"websocket"]), st.booleans(),
       st.sampled_from([b"X-Forwarded-For: 10.0.0.1\r\n", b""]))
def test_the_head_to_the_backend_is_the_one_the_python_writes(raw, upgrade, trusted, xff_line):
    from worker import rewrite
    line_end = raw.find(b"\r\n")
    try:
        http1.validate_request(http1.REQUEST_PARSER(http1.NO_CALLBACKS), raw)     # llhttp's verdict first
        head = http1.request_head_from(raw, line_end, http1.check_request_line(raw, line_end, FIRST_LIMITS))
    except http1.HttpError:
        return
    arguments = (head, b"/mapped?q", b"Host: backend:80\r\n", xff_line, b"X-Forwarded-Proto: http\r\n", upgrade, trusted)
    chosen = rewrite.joined_head
    try:
        rewrite.joined_head = _heads.joined_head
        native = rewrite.request_head(*arguments)
        rewrite.joined_head = None
        assert native == rewrite.request_head(*arguments)
    finally:
        rewrite.joined_head = chosen


FIRST_LIMITS = type("Limits", (), {"request_line": 8190, "header_fields": 100, "header_field": 8190})


@pytest.mark.parametrize("connection", [b"close", b"Keep-Alive", b"CLOSE", b"close, X-Foo", b"x-foo", b"keep-alive, te"])
def test_a_connection_field_goes_and_so_do_the_fields_it_names(connection):
    """`Connection: close` (every TLS client without keep-alive sends it) is joined in C; one
    naming another field has that field taken out too, as the Python does, in C or not."""
    from worker import rewrite
    raw = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: " + connection + b"\r\nX-Foo: 1\r\nTE: t\r\nB: 2\r\n\r\n"
    head = http1.request_head_from(raw, 14, [b"GET", b"/", b"HTTP/1.1"])
    arguments = (head, b"/", b"Host: b\r\n", b"X-Forwarded-For: 1.2.3.4\r\n", b"", None)
    chosen = rewrite.joined_head
    try:
        outs = []
        for joiner in (_heads.joined_head, None):
            rewrite.joined_head = joiner
            outs.append(rewrite.request_head(*arguments))
    finally:
        rewrite.joined_head = chosen
    kept = b"" if b"foo" in connection.lower() else b"X-Foo: 1\r\n"
    expected = b"GET / HTTP/1.1\r\nHost: b\r\n" + kept + b"B: 2\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Host: a\r\n\r\n"
    assert outs == [expected, expected]


def test_a_head_with_dropped_lines_everywhere_is_joined_right():
    from worker import rewrite
    raw = (b"POST / HTTP/1.1\r\nTE: x\r\nHost: a\r\nA: 1\r\nKeep-Alive: 5\r\nForwarded: for=x\r\nB: 2\r\nTe: y\r\n"
           b"Transfer-Encoding:  chunked\r\nX_Forwarded_For: y\r\n\r\n")
    head = http1.request_head_from(raw, 15, [b"POST", b"/", b"HTTP/1.1"])
    assert head.framing_line is not None
    out = rewrite.request_head(head, b"/", b"Host: b\r\n", b"X-Forwarded-For: 1.2.3.4\r\n", b"", None)
    assert out == (b"POST / HTTP/1.1\r\nHost: b\r\nA: 1\r\nB: 2\r\nTransfer-Encoding: chunked\r\n"
                   b"X-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Host: a\r\n\r\n")


# == a response head llhttp is not asked about: of a shape it has nothing to refuse in ===============
@st.composite
def mutated_response(draw) -> bytes:
    """A response head with a few bytes replaced or inserted anywhere (any byte value)."""
    raw = bytearray(draw(clean_head(STATUS_LINES)))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(raw)))
        byte = draw(st.sampled_from([0, 9, 10, 13, 32, 0x7f, 0x80, 0xff, ord(":"), ord("("), ord("@"), ord(","),
                                     ord("\\"), ord('"'), ord("{"), ord("/")]) | st.integers(0, 255))
        if draw(st.booleans()) and at < len(raw):
            raw[at] = byte
        else:
            raw.insert(at, byte)
    return bytes(raw)


@settings(max_examples=800, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(clean_head(STATUS_LINES), mutated_response()))
def test_llhttp_accepts_every_head_it_is_not_asked_about(raw):
    end = raw.find(b"\r\n\r\n")
    if end < 0 or end + 4 != len(raw):
        return                  # parse_response gets a head ending at its first CRLFCRLF
    usual = _heads.response(raw)
    if usual is None or not usual[1]:
        return
    parser = http1.RESPONSE_PARSER(http1.NO_CALLBACKS)
    assert http1.validate(parser, raw, False), raw          # would raise HttpError (502) on a refusal
    assert _slots(http1.parse_response(raw)) == _slots(http1.response_head_from(raw, parser))


def test_the_usual_response_is_not_given_to_llhttp():
    assert _heads.response(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\n")[1]
    for judged in (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"HTTP/1.1 200 OK\r\nA:\xff\r\n\r\n",
                   b"HTTP/1.1 200 OK\r\nA : b\r\n\r\n", b"HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n"):
        usual = _heads.response(judged)
        assert usual is None or not usual[1], judged


# == the C's own boundaries (review 2026-12-04-night-heads): arguments no scan made ====================
def _isolated(code: str) -> str:
    """Run `code` in a fresh interpreter (a fault there must not take the test run with it)."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return done.stdout.decode().strip()


def test_joined_head_leaves_arguments_no_scan_made_to_the_python():
    """Each of these read or wrote outside the head (review #1, #4): now None, the Python's to join."""
    out = _isolated(r'''
from worker import http1, _heads
r = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
class Key:
    def __hash__(self):
        spans.clear()
        return 1
spans = {}
key = Key()
spans[key] = [(14, 23, 22)]
cases = [((b"y" * 10,), b"", 0, {}, set(), None, ()),
         ((), r, 14, {b"host": [(14, -4000, 0)]}, {b"host"}, None, ()),
         ((), b"GET / HTTP/1.1\r\n\r\n", 14, {}, set(), b"x", ()),
         ((), r, -100000, {}, set(), None, ()),
         ((b"x" * 100,), r, 60, {}, set(), None, ()),
         ((), r, 14, spans, {b"host"}, None, ())]
print([_heads.joined_head(*case) for case in cases])
''')
    assert out == "[None, None, None, None, None, None]"


def test_the_names_decide_the_fast_paths():
    """No scan before the names are set (review #2); each watched name once, spelled exactly (#3)."""
    out = _isolated(r'''
import worker._heads as h
print(h.scan(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")[1])
from worker import headscan, http1
h.set_head_types(http1.RequestHead, headscan.REQUEST_SLOTS, http1.ResponseHead, headscan.RESPONSE_SLOTS, ())
h.set_names((b"host",) * 5)
print(h.request(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 8190, 100, 8190))
h.set_names((b"host", b"content-length\x00", b"transfer-encoding", b"connection", b"upgrade"))
print(h.request(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", 8190, 100, 8190))
h.set_names((b"host", b"content-length", b"transfer-encoding", b"connection", b"upgrade"))
print(h.request(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", 8190, 100, 8190).content_length)
''')
    assert out.splitlines() == ["{}", "None", "None", "5"]


def test_the_head_classes_are_checked_before_the_c_fills_them():
    """The C writes a head's slots where the classes' descriptors say: before it is told the
    classes, a usual head raises; a name that is no object slot of the class, or is named twice,
    or too few names, are refused; and worker.headscan refuses a class with a slot the C would
    leave unset (native or not)."""
    out = _isolated(r'''
import worker._heads as h
h.set_names((b"host", b"content-length", b"transfer-encoding", b"connection", b"upgrade"))
try:
    h.request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 8190, 100, 8190)
except RuntimeError:
    print("unset")
from worker import headscan, http1
R, S = headscan.REQUEST_SLOTS, headscan.RESPONSE_SLOTS
for names in (R[:-1] + ("get",), R[:-1] + ("raw",), R[:-1] + ("nothing",), R[:-1]):
    try:
        h.set_head_types(http1.RequestHead, names, http1.ResponseHead, S, ())
        print("taken")
    except (TypeError, AttributeError) as error:
        print(type(error).__name__)
class Wider(http1.RequestHead):
    __slots__ = ("extra",)
try:
    headscan.make_heads_as(Wider, http1.ResponseHead, http1.HOP_BY_HOP)
except RuntimeError:
    print("refused")
''')
    assert out.splitlines() == ["unset", "TypeError", "TypeError", "AttributeError", "TypeError", "refused"]


def test_the_head_classes_are_set_whole_and_only_classes_made_as_object_makes_them():
    """Review 2026-12-04-late-heads: a refused call changes nothing (#3); a class whose instances
    need more than tp_alloc (an Exception's) is refused (#2, it crashed); and a collection inside
    the C's allocation whose finalizer sets other classes leaves the head being made whole (#1,
    it came back with its slots permuted, or written past its end)."""
    out = _isolated(r'''
import gc
from worker import headscan, http1, _heads
R, S, HOP = headscan.REQUEST_SLOTS, headscan.RESPONSE_SLOTS, tuple(sorted(http1.HOP_BY_HOP))
_heads.set_names(tuple(headscan.FIELDS))
_heads.set_head_types(http1.RequestHead, R, http1.ResponseHead, S, HOP)
raw = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"
class Other:
    __slots__ = tuple(f"pad{i}" for i in range(400)) + tuple(reversed(R))
try:
    _heads.set_head_types(Other, R, http1.ResponseHead, S[:-1], HOP)
except TypeError:
    print(type(_heads.request(raw, 8190, 100, 8190)).__name__)
class Failing(Exception):
    __slots__ = R
try:
    _heads.set_head_types(Failing, R, http1.ResponseHead, S, HOP)
except TypeError:
    print("refused")
class Cycle:
    def __del__(self):
        _heads.set_head_types(Other, R, http1.ResponseHead, S, HOP)
made = set()
for threshold in range(1, 12):
    _heads.set_head_types(http1.RequestHead, R, http1.ResponseHead, S, HOP)
    gc.collect()
    gc.set_threshold(threshold)
    cycle = Cycle()
    cycle.me = cycle
    del cycle
    head = _heads.request(raw, 8190, 100, 8190)
    gc.set_threshold(700)
    made.add((type(head).__name__, head.method, head.target, head.host, head.line_end))
    gc.collect()
print(sorted(made))
''')
    lines = out.splitlines()
    assert lines[:2] == ["RequestHead", "refused"]
    # Each head is whole, as the class it was made as (RequestHead, or Other once a collection
    # inside an earlier call had set it): never a mixture.
    made = eval(lines[2])
    assert made and all(entry[1:] == (b"GET", b"/x", b"a", 15) for entry in made), made
