"""What the access log writes for the fields a client or an operator controls (review
2026-12-03-operating): in the JSON format each value is escaped once, by JSON itself (a quote
reads back as a quote, a backslash as a backslash, UTF-8 as its characters, any other byte as
the text \\xhh).

A real master and worker, a raw backend, raw-socket clients."""

from __future__ import annotations

import json
import re

import pytest
from proxyproc import wait_access
from rawbackend import RawBackend
from rawsock import recv_until_eof

AGENT = 'agent "quoted" back\\slash caf\u00e9'.encode() + b" \xff"
REFERER = b'http://r.test/?q="x"'


def _send(proxy, path: bytes) -> bytes:
    with proxy.connect() as sock:
        sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: t\r\nUser-Agent: " + AGENT +
                     b"\r\nReferer: " + REFERER + b"\r\nConnection: close\r\n\r\n")
        return recv_until_eof(sock)


@pytest.fixture
def backend():
    backend = RawBackend()
    yield backend
    backend.close()


def test_json_values_are_escaped_once(proxy_factory, backend):
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1, log={"format": "json"})
    assert _send(proxy, b"/j/caf%C3%A9?a=\\b").startswith(b"HTTP/1.1 200")
    record = json.loads(wait_access(proxy, "/j/")[0])
    # (parent: 'agent \\"quoted\\" back\\\\slash caf\\xc3\\xa9 \\xff': Apache's escapes, escaped again)
    assert record["user_agent"] == 'agent "quoted" back\\slash caf\u00e9 \\xff', record["user_agent"]
    assert record["referer"] == 'http://r.test/?q="x"'
    assert record["request"] == "GET /j/caf%C3%A9?a=\\b HTTP/1.1"


QUOTED = re.compile(rb'"((?:[^"\\]|\\.)*)"')


def test_a_route_pattern_with_a_quote_keeps_the_combined_line_parseable(proxy_factory, backend):
    """An operator's regex may hold `"` and `\\`: written as Apache escapes them, so a parser of
    the combined format reads the same five quoted fields (request, referer, agent, route,
    backend)."""
    pattern = r'^/m/(\d+)"?'
    proxy = proxy_factory([{"match": pattern, "to": backend.url + "/m/$1"}], workers=1)
    assert _send(proxy, b"/m/12").startswith(b"HTTP/1.1 200")
    line = wait_access(proxy, "/m/12")[0].encode()
    fields = [re.sub(rb"\\(.)", rb"\1", field) for field in QUOTED.findall(line)]
    # (parent: the route's raw quote ended its field early: fields[3] == b'^/m/(d+)', fields[4] == b' ')
    assert len(fields) == 5 and fields[3] == pattern.encode() and fields[4] == backend.url.encode(), fields
