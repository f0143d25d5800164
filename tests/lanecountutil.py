"""What the tests of the lane's /metrics counting share (tests/test_lane_count*.py): a backend
that answers each path with a response of the shape it names, a client's request and response,
and the cells of a /metrics scrape that two ways of counting must agree on."""

from __future__ import annotations

import socket
import time

from admin_util import scrape
from rawbackend import respond
from rawsock import HEAD_END

SLOW = 0.3          # seconds the backend takes over /slow/…: above the 0.25 s bucket's bound
BIG = 4 * 1024 * 1024
HUGE = 32 * 1024 * 1024     # more than every buffer on the way holds: still under way when a reload comes
# The ways of counting compared: in the lane's C, in Python, and with no lane at all.
SWITCHES = {"c1": {"MPM_NATIVE_LANE_COUNT": "1"}, "c0": {"MPM_NATIVE_LANE_COUNT": "0"},
            "nolane": {"MPM_NATIVE_LANE": "0"}}


def answer(conn) -> None:
    """RawBackend's handler: /ROUTE/KIND/… gets a response of that kind."""
    while True:
        head = conn.read_head()
        if head is None:
            return
        conn.read_body(head)
        kind = head.target.split("/")[2]
        if kind == "cl":
            conn.send(respond(200, b"x" * 100))
        elif kind == "missing":
            conn.send(respond(404, b"nope", reason="Not Found"))
        elif kind == "broken":
            conn.send(respond(502, b"", reason="Bad Gateway"))
        elif kind == "e204":
            conn.send(respond(204, reason="No Content"))
        elif kind == "e304":
            conn.send(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n")
        elif kind == "chunked":             # a shape the lane gives back: Python serves and counts it
            conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        elif kind == "big":
            conn.send(respond(200, b"b" * BIG))
        elif kind == "huge":
            conn.send(respond(200, b"h" * HUGE))
        elif kind == "slow":
            time.sleep(SLOW)
            conn.send(respond(200, b"late"))
        elif kind == "sleep":               # /ROUTE/sleep/SECONDS
            time.sleep(float(head.target.split("/")[3]))
            conn.send(respond(200, b"late"))
        elif kind == "close":               # the whole response, then the backend goes
            conn.send(respond(200, b"y" * 50))
            time.sleep(0.05)
            conn.sock.close()
            return
        elif kind == "stall":               # a head and part of the body, then nothing
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"s" * 10)
            time.sleep(3)
            conn.sock.close()
            return
        elif kind == "x999":
            conn.send(b"HTTP/1.1 999 Odd\r\nContent-Length: 3\r\n\r\nodd")
        elif kind == "overrun":             # the body in two reads, then bytes nobody asked for
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n" + b"o" * 10)
            time.sleep(0.1)
            conn.send(b"o" * 10 + b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")


def request(path: str, close: bool = False, method: str = "GET") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: c.test\r\n" + ("Connection: close\r\n" if close else "")
            + "\r\n").encode()


def response(sock: socket.socket, head_request: bool = False) -> bytes:
    """One response as `answer` sends them (Content-Length, chunked or none), read whole."""
    data = b""
    while HEAD_END not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a head: {data!r}"
        data += chunk
    head, _, body = data.partition(HEAD_END)
    lower = head.lower()
    if head_request or b" 204 " in head or b" 304 " in head:
        return head + HEAD_END
    if b"transfer-encoding: chunked" in lower:
        while not body.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            assert chunk, "closed in a body"
            body += chunk
        return head + HEAD_END + body
    length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed in a body"
        body += chunk
    return head + HEAD_END + body


def counted(samples: dict, buckets: bool = False) -> dict:
    """What two ways of counting must agree on: requests by route and status class, bytes and
    durations by route (and the duration buckets, with `buckets`), the cells that are not 0."""
    out = {}
    for (name, labels), number in samples.items():
        labels = dict(labels)
        if name == "mpm_requests_total":
            out[name, labels["route"], labels["code_class"]] = number
        elif name in ("mpm_received_bytes_total", "mpm_sent_bytes_total", "mpm_request_duration_seconds_count"):
            out[name, labels["route"]] = number
        elif buckets and name == "mpm_request_duration_seconds_bucket":
            out[name, labels["route"], labels["le"]] = number
    return {key: number for key, number in out.items() if number}


def settled(proxy) -> dict:
    """`counted` of /metrics, with buckets, once two scrapes 0.3 s apart agree."""
    before = counted(scrape(proxy), buckets=True)
    while True:
        time.sleep(0.3)
        now = counted(scrape(proxy), buckets=True)
        if now == before:
            return now
        before = now
