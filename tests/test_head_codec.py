"""The compiled head scan (worker/_heads.c) against its reference, the regular expression in
worker.http1 (`_scan_in_python`): the same lower-cased bytes and the same spans, in the same
order, for random heads and for the fuzz suite's requests.  No sockets: both are functions of
the bytes alone.  The suite itself runs on the compiled scan, and CI runs the HTTP modules once
more with MPM_NATIVE_HEADS=0, so the reference stays proven against real traffic too."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import fuzz_http
from worker import http1

_heads = pytest.importorskip("worker._heads", reason="the compiled head scan is not built here")

NAMES = sorted(http1._FIELDS) + sorted(http1.FORWARDING_SPELLINGS) + [
    b"hosts", b"x-host", b"content-type", b"x-forwarded-fo", b"x_forwarded_protocol", b"t", b"tee", b""]
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
    want_lower, want_spans = http1._scan_in_python(raw)
    assert lower == want_lower
    assert spans == want_spans
    assert list(spans) == list(want_spans)          # the same order (rewrite keeps it)


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(head())
def test_the_scan_finds_what_the_regular_expression_finds(raw):
    _same(raw)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
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
