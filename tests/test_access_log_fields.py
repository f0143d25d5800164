"""What the access log writes for the fields a client or an operator controls (review
2026-12-03-operating): in the JSON format each value is escaped once, by JSON itself (a quote
reads back as a quote, a backslash as a backslash, UTF-8 as its characters, any other byte as
the text \\xhh).

A real master and worker, a raw backend, raw-socket clients."""

from __future__ import annotations

import json
import re
import time

import pytest
from proxyproc import wait_access
from rawbackend import RawBackend, respond, serve_simple
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


COMBINED = re.compile(rb'^127\.0\.0\.1 - - \[(?P<time>[^\]]+)\] "(?P<request>(?:[^"\\]|\\.)*)" (?P<status>\d{3}) '
                      rb'(?P<bytes>\d+|-) "(?P<referer>(?:[^"\\]|\\.)*)" "(?P<agent>(?:[^"\\]|\\.)*)" (?P<micros>\d+) '
                      rb'"(?P<route>(?:[^"\\]|\\.)*)" "(?P<backend>[^"]*)" (?P<conn>[X+-])$')


def _answer(head, body):
    if head.target.startswith("/e/empty"):
        return respond(204)
    return respond(200, b"x" * 37)


def test_combined_line_field_by_field(proxy_factory):
    """The combined line as a parser of Apache's format reads it: %t as the current second
    (and a later second once one has passed: the worker keeps the text of one second), %b
    as "-" for no body and the body's bytes otherwise, Referer and User-Agent escaped as
    Apache escapes them, a request line with nothing to escape as it came."""
    from datetime import datetime, timezone

    backend = RawBackend(handler=lambda conn: serve_simple(conn, _answer))
    try:
        proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1)
        with proxy.connect() as sock:
            sock.sendall(b"GET /e/empty?a=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert recv_until_eof(sock).startswith(b"HTTP/1.1 204")
        time.sleep(1.1)
        assert _send(proxy, b"/e/body").startswith(b"HTTP/1.1 200")
        empty = COMBINED.match(wait_access(proxy, "/e/empty")[0].encode())
        body = COMBINED.match(wait_access(proxy, "/e/body")[0].encode())
    finally:
        backend.close()
    assert empty and body, proxy.access_lines()
    assert (empty["request"], empty["status"], empty["bytes"], empty["referer"], empty["agent"], empty["conn"]) == \
        (b"GET /e/empty?a=1 HTTP/1.1", b"204", b"-", b"-", b"-", b"-")
    assert (body["request"], body["status"], body["bytes"], body["conn"]) == (b"GET /e/body HTTP/1.1", b"200", b"37", b"-")
    assert body["agent"] == rb'agent \"quoted\" back\\slash caf\xc3\xa9 \xff' and body["referer"] == rb'http://r.test/?q=\"x\"'
    assert empty["backend"] == body["backend"] == backend.url.encode()
    stamps = [datetime.strptime(m["time"].decode(), "%d/%b/%Y:%H:%M:%S %z") for m in (empty, body)]
    now = datetime.now(timezone.utc)
    assert all(abs((now - stamp).total_seconds()) < 10 for stamp in stamps), stamps
    assert stamps[1] > stamps[0], stamps


REFUSED = [   # (what the client sends, the status, the request line logged)
    (b"brew /pot HTTP/1.1\r\nHost: t\r\n\r\n", 501, '"brew /pot HTTP/1.1"'),
    (b"POST /te HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501,
     '"POST /te HTTP/1.1"'),
    (b"GET /field HTTP/1.1\r\nHost: t\r\nBad Name: x\r\n\r\n", 400, '"GET /field HTTP/1.1"'),
    (b"GET /nohost HTTP/1.1\r\n\r\n", 400, '"GET /nohost HTTP/1.1"'),
]


@pytest.mark.parametrize("fmt", ["combined", "json"])
def test_a_head_refused_whole_is_logged_with_its_request_line(proxy_factory, backend, fmt):
    """Apache logs a 501's or a 400's request line (%r) once it has read it; before, the line
    was "-", and an operator could not tell which client sent what.  A head refused before it
    was whole (here: a request line past LimitRequestLine, 414) has no line to log."""
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1, log={"format": fmt})
    for sent, status, _ in REFUSED:
        with proxy.connect() as sock:
            sock.sendall(sent)
            assert recv_until_eof(sock).startswith(b"HTTP/1.1 %d" % status), sent
    with proxy.connect() as sock:
        sock.sendall(b"GET /" + b"x" * 9000 + b" HTTP/1.1\r\n")
        assert recv_until_eof(sock).startswith(b"HTTP/1.1 414")
    lines = wait_access(proxy, " 414 " if fmt == "combined" else '"status": 414', 1)
    assert lines, proxy.access_lines()
    logged = proxy.access_lines()
    for _, status, request in REFUSED:
        if fmt == "json":
            records = [json.loads(line) for line in logged]
            assert {"request": request.strip('"'), "status": status} in [
                {"request": r["request"], "status": r["status"]} for r in records], records
        else:
            assert any(f"{request} {status} " in line for line in logged), (request, logged)
    too_long = lines[0]
    assert ('"-" 414 ' in too_long) if fmt == "combined" else json.loads(too_long)["request"] == "-", too_long
    # A field over LimitRequestFieldSize in a head larger than a read: refused while reading
    # (431), its request line already whole: logged (it was "-", review 2026-12-04-logs #9).
    with proxy.connect() as sock:
        try:
            sock.sendall(b"GET /big-field HTTP/1.1\r\nHost: t\r\nX-Big: " + b"b" * 70_000 + b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass            # refused before it was all sent: the answer is read below
        assert recv_until_eof(sock).startswith(b"HTTP/1.1 431")
    big = wait_access(proxy, " 431 " if fmt == "combined" else '"status": 431', 1)[0]
    assert ('"GET /big-field HTTP/1.1" 431 ' in big) if fmt == "combined" else \
        json.loads(big)["request"] == "GET /big-field HTTP/1.1", big


@pytest.mark.parametrize("fmt", ["combined", "json"])
def test_the_time_is_when_the_request_came_not_when_it_ended(proxy_factory, fmt):
    """Apache's %t is the time the request was received; a request whose backend took 3 s
    was stamped at its end (review 2026-12-04-logs #6)."""
    from datetime import datetime, timezone

    def slow(head, body):
        time.sleep(3.0)
        return respond(200, b"late")
    backend = RawBackend(handler=lambda conn: serve_simple(conn, slow))
    try:
        proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1, log={"format": fmt})
        sent = datetime.now(timezone.utc)
        assert _send(proxy, b"/slow/stamp").startswith(b"HTTP/1.1 200")
        line = wait_access(proxy, "/slow/stamp")[0]
    finally:
        backend.close()
    if fmt == "json":
        stamp = datetime.strptime(json.loads(line)["time"], "%Y-%m-%dT%H:%M:%S%z")
    else:
        stamp = datetime.strptime(COMBINED.match(line.encode())["time"].decode(), "%d/%b/%Y:%H:%M:%S %z")
    assert abs((stamp - sent).total_seconds()) < 1.5, (stamp, sent)      # (parent: 2-3 s later)
