"""The keep-alive lane answers as worker.exchange does: the same scripted keep-alive
conversations, through a proxy with the lane and one without (MPM_NATIVE_LANE=0), give the
client the same bytes and the access log the same lines.

Each conversation is drawn from a seeded generator, on a new connection (the lane takes its first
exchange too, once a backend connection waits in the pool): GET, HEAD and POST requests, alone or
pipelined, some asking for the close, for responses of every shape the backend below makes (Content-Length, empty, chunked,
204, 304, an interim 103, a field the proxy takes out, a head sent in pieces, a large body, a
backend that closes after its answer).  (A client's FIN during an exchange races the response
in both paths, so it is tests/test_lane.py's, not this comparison's.)
"""

from __future__ import annotations

import collections
import datetime
import random
import re
import socket
import time
import warnings

import pytest
from proxyproc import Proxy
from rawbackend import RawBackend, respond
from rawsock import HEAD_END
from support import serve_tls

pytestmark = pytest.mark.timeout(120)

KINDS = ("cl", "cl0", "chunked", "e204", "e304", "interim", "hop", "split", "big", "closing")
SEEDS = range(40)


def _answer(conn) -> None:
    """The response /r/KIND/N/... asks for, the same every time."""
    while True:
        head = conn.read_head()
        if head is None:
            return
        body = conn.read_body(head)
        _, _, kind, n, *_ = head.target.split("/")
        text = f"{head.method} {head.target} {len(body)}".encode() * (int(n) + 1)
        if kind == "cl":
            conn.send(respond(200, text))
        elif kind == "cl0":
            conn.send(respond(200, b""))
        elif kind == "chunked":
            conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(text), text))
        elif kind in ("e204", "e304"):
            conn.send(respond(int(kind[1:]), reason="No"))
        elif kind == "interim":
            conn.send(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n" + respond(200, text))
        elif kind == "hop":
            conn.send(respond(200, text, headers=[("Keep-Alive", "timeout=9"), ("X-Shape", "hop")]))
        elif kind == "split":
            whole = respond(201, text, reason="Made")
            for part in (whole[:20], whole[20:-3], whole[-3:]):
                conn.send(part)
                time.sleep(0.01)
        elif kind == "big":
            conn.send(respond(200, text * 2000))
        elif kind == "closing":
            conn.send(respond(200, text, headers=[("Connection", "close")]))
            return


# What a client may put in the fields the access log quotes (worker.logs' `_quote`): quotes,
# backslashes, UTF-8, a tab, surrounding blanks, nothing at all.
FIELD_VALUES = (b"https://a.test/", b'say "hi"', b"back\\slash", "caf\u00e9/\u2603".encode(), b"a\tb",
                b"  padded \t", b"", b"curl/8.5.0")


def _logged_fields(rng: random.Random) -> bytes:
    """Referer and User-Agent fields, or none, in any case of name, once or twice."""
    fields = b""
    for name in (b"Referer", b"User-Agent"):
        for _ in range(rng.choice((0, 1, 1, 2))):
            spelled = name.lower() if rng.random() < 0.3 else name
            fields += spelled + b":" + rng.choice((b"", b" ")) + rng.choice(FIELD_VALUES) + b"\r\n"
    return fields


def _script(seed: int) -> list:
    """[(request bytes, its methods)] per step: a step sends its requests at once."""
    rng = random.Random(seed)
    steps = []
    for i in range(rng.randint(8, 16)):
        requests, methods = b"", []
        for j in range(1 if rng.random() < 0.75 else rng.randint(2, 3)):
            method = rng.choice(("GET",) * 8 + ("HEAD", "POST"))
            target = f"/r/{rng.choice(KINDS)}/{rng.randint(0, 3)}/{i}.{j}"
            body = b"b" * rng.randint(1, 3000) if method == "POST" else b""
            requests += f"{method} {target} HTTP/1.1\r\nHost: d.test\r\n".encode() + _logged_fields(rng)
            if rng.random() < 0.08:         # the last exchange (said in the response, and done)
                requests += b"Connection: close\r\n"
            requests += b"Content-Length: %d\r\n\r\n%s" % (len(body), body) if body else b"\r\n"
            methods.append(method)
        steps.append((requests, methods))
    return steps


def _read_response(sock: socket.socket, buf: bytearray, head_request: bool) -> bytes | None:
    """The bytes of one response (its interim heads first), or None at the close."""
    out = b""
    while True:
        while HEAD_END not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                return None if not out and not buf else out + bytes(buf)
            buf += chunk
        end = buf.index(HEAD_END) + 4
        head = bytes(buf[:end])
        del buf[:end]
        out += head
        status = int(head.split(b" ", 2)[1])
        if status >= 200:
            break
    lower = head.lower()
    if head_request or status in (204, 304):
        return out
    if b"transfer-encoding: chunked" in lower:
        while True:         # chunk by chunk: the next response may be in `buf` already
            line = _take(sock, buf, buf.find(b"\r\n") + 2 if b"\r\n" in buf else None)
            out += line
            size = int(line.split(b";")[0], 16)
            out += _take(sock, buf, size + 2 if size else 2)
            if not size:
                return out
    return out + _take(sock, buf, int(re.search(rb"content-length: *(\d+)", lower)[1]))


def _take(sock: socket.socket, buf: bytearray, size: int | None) -> bytes:
    """The first `size` bytes of `buf`, read into it as needed (None: up to a CRLF)."""
    while size is None or len(buf) < size:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"EOF in a body: {bytes(buf[:200])!r}")
        buf += chunk
        if size is None and b"\r\n" in buf:
            size = buf.find(b"\r\n") + 2
    out = bytes(buf[:size])
    del buf[:size]
    return out


def _converse(proxy: Proxy, seed: int) -> list:
    """What the client got, step by step, and whether the connection ended."""
    got = []
    with proxy.connect(10) as sock:
        buf = bytearray()
        steps = _script(seed)
        for requests, methods in steps:
            sock.sendall(requests)
            for method in methods:
                answer = _read_response(sock, buf, method == "HEAD")
                got.append(answer)
                if answer is None:
                    return got
            if b"\r\nconnection: close\r\n" in _final_head(got[-1]).lower():
                got.append(sock.recv(1))          # closed after it: b""
                return got
    return got


def _final_head(answer: bytes) -> bytes:
    """The head after the interim (1xx) ones, with the CRLF that ends its last field."""
    at = 0
    while True:
        end = answer.index(HEAD_END, at) + 2
        if answer[at + 9:at + 10] != b"1":        # "HTTP/1.1 1xx"
            return answer[at:end]
        at = end + 2


def _lines(proxy: Proxy) -> list:
    """The access log without what differs by the clock, %t and %D, or by the run, the
    backend's port (%D is the last number before the route and backend, which hold no quote)."""
    return sorted(re.sub(r'" \d+ ("[^"]*" "[^":]*:[^":]*):\d+(" \S)$', r'" D \1:P\2',
                         re.sub(r" \[[^]]*\] ", " T ", line, count=1))
                  for line in proxy.access_lines())


@pytest.fixture(scope="module", params=["plain", "tls"])
def proxies(request, tmp_path_factory):
    """Plain: the lane against the Python path.  TLS: the lane that reads and writes TLS
    clients through their SSL objects against the Python path's ssl.SSLSocket."""
    started = []
    switch = "MPM_NATIVE_LANE" if request.param == "plain" else "MPM_NATIVE_LANE_TLS"
    for lane in ("1", "0"):
        backend = RawBackend(_answer)
        directory = tmp_path_factory.mktemp(f"lane{lane}")
        proxy = Proxy(directory, [{"path": "/", "to": backend.url + "/"}], workers=1, environ={switch: lane})
        if request.param == "tls":
            serve_tls(proxy, directory)
        proxy.started_at = time.time()
        proxy.start()
        started.append(proxy)
    yield started
    for proxy in started:
        proxy.stop()


@pytest.mark.parametrize("seed", SEEDS)
def test_the_lane_answers_as_the_python_path(proxies, seed):
    with_lane, without = proxies
    ours, reference = _converse(with_lane, seed), _converse(without, seed)
    assert len(ours) == len(reference)
    for step, (a, b) in enumerate(zip(ours, reference, strict=True)):
        assert a == b, f"seed {seed}, answer {step}: {a[:300]!r} != {b[:300]!r}"


def test_the_logs_say_the_same(proxies):
    """The lines are compared once both proxies have stopped (a worker writes every queued line
    as it exits), so a line still queued cannot pass for a line missing.  Lines still queued
    while both are idle, past the sinks' write delay, are said as a warning, for the next time.

    Both proxies are idle here: each writes what it queued at its next idle turn (within
    worker.loop's SWEEP_INTERVAL, worker.logsink's ACCESS_FLUSH at most).  Until then two logs
    can be equal and equally behind (the last conversations' lines queued in both), so they are
    read once that time has passed, and the warning reports the reading that was compared.
    Before, the loop stopped at the first equal reading and a second one, 20 ms later, was
    reported as "still queued 5 s after": one full-suite run in about seven (a helper's
    instrumented runs, 2026-12-05: no line ever waited more than 0.75 s)."""
    with_lane, without = proxies
    started = time.monotonic()
    time.sleep(1.5)
    while True:
        seen = {name: _lines(proxy) for name, proxy in (("lane", with_lane), ("python", without))}
        if seen["lane"] == seen["python"] or time.monotonic() >= started + 5:
            break
        time.sleep(0.1)
    waited = time.monotonic() - started
    behind = {name: len(lines) for name, lines in seen.items()}
    for proxy in proxies:
        proxy.stop()
    ours, reference = _lines(with_lane), _lines(without)
    only_ours = sorted(set(ours) - set(reference))[:5]
    only_theirs = sorted(set(reference) - set(ours))[:5]
    assert ours == reference, f"{len(ours)} != {len(reference)} lines; only with the lane: {only_ours}; " \
                              f"only without: {only_theirs}"
    if len(set(behind.values())) > 1:
        late = {name: sorted((collections.Counter(ours) - collections.Counter(lines)).elements())[:3]
                for name, lines in seen.items() if len(lines) < len(ours)}
        warnings.warn(f"access-log lines still queued {waited:.1f} s after the last request: {behind} lines, "
                      f"{len(ours)} after the stop; late lines: {late}", stacklevel=1)
    assert len(ours) > 100
    # %t (worker/_lane_log.c writes the lane's): the second each request came, during this module.
    for line in with_lane.access_lines():
        stamp = datetime.datetime.strptime(re.search(r" \[([^]]*)\] ", line)[1], "%d/%b/%Y:%H:%M:%S %z")
        assert with_lane.started_at - 1 <= stamp.timestamp() <= time.time(), line
