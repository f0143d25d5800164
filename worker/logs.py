"""Access and error log lines: Apache's combined format (or JSON) and the error log's.

Lines are built as bytes straight from the request head (no decoding), the request line as
the client sent it, and handed to a `worker.logsink.LogSink`, which writes them without ever
blocking the loop (buffered for the access log).
"""

from __future__ import annotations

import json
import re
import time

from worker.logsink import MAX_PENDING, LogSink

# Apache's ap_escape_logitem: quotes and backslashes escaped, other unprintables as \xhh.
_UNSAFE = re.compile(rb'[^\x20-\x7e]|["\\]')


def _escape(match: re.Match) -> bytes:
    char = match.group()
    return b"\\" + char if char in b'"\\' else b"\\x%02x" % char[0]


# Printable ASCII but the quote and the backslash: what a log field may hold as it is.
_SAFE = bytes(c for c in range(0x20, 0x7f) if c not in b'"\\')
# A table that changes every byte but the safe ones: CPython's bytes.translate returns its input itself
# when the table changed nothing, so `value.translate(_MARK) is value` says "all safe" in one
# C loop with no allocation (~50 ns; translate(None, _SAFE) built a deletion table per call,
# ~250 ns, and a regex search cost more).  Where `is` fails for another reason, the escaping
# below is right for safe bytes too.
_MARK = bytes(c if c in _SAFE else (c + 1) % 256 for c in range(256))


def _quote(value: bytes | None) -> bytes:
    if not value:
        return b"-"
    return value if value.translate(_MARK) is value else _UNSAFE.sub(_escape, value)


def _text(value: bytes | None) -> str:
    return _quote(value).decode("latin-1")


log_field = _quote      # for names fixed at start (a route's): escaped once, not per line


def _json_text(value: bytes | None) -> str:
    """A client's bytes for the JSON format, escaped once (by json.dumps): UTF-8 as the
    characters it spells, any other byte as the text \\xhh."""
    return value.decode("utf-8", "backslashreplace") if value else "-"


def _apache_time(wall: float) -> bytes:
    return time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(int(wall))).encode()


def _iso_time(wall: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(int(wall)))


def _json_marker(count: int, reason: str) -> bytes:
    return (json.dumps({"time": _iso_time(time.time()), "dropped": count, "reason": reason})
            + "\n").encode()


_LINE = b'%s - - %s "%s" %d %d "%s" "%s" %d "%s" "%s" %s\n'
_LINE_NO_BODY = b'%s - - %s "%s" %d -%.0s "%s" "%s" %d "%s" "%s" %s\n'


class AccessLog:
    """Apache's combined format (%b: body bytes) plus %D (microseconds), route, backend and
    %X (X: aborted before the response was complete, +: kept alive, -: closed); or JSON,
    whose bytes_sent counts the head too (Apache's %O)."""

    def __init__(self, sink: LogSink, fmt: str, loop):
        self.sink = sink
        self.json = fmt == "json"
        if self.json:          # a JSON-lines reader parses every line, the dropped lines' too
            sink.marker = _json_marker
        # %t for an exchange's line: the text of the second its request came in, kept while
        # requests start within that second on the loop's monotonic clock (one comparison per
        # line; asking time.time() per line, a call and a conversion, was ~5 % of its cost).
        self.loop = loop      # worker.loop.EventLoop: its `now`
        self.stamp = b""
        self.stamp_until = -1.0

    def _stamp(self, start: float, now: float) -> bytes:
        """%t of a request that came at `start` (the loop's clock): Apache's "time the request
        was received", not the line's (a 2 s request, an hour's tunnel, were stamped at their
        end: review 2026-12-04-logs #6).  Kept for the rest of that second."""
        wall = time.time() - (now - start)
        self.stamp_until = start + (1.0 - wall % 1.0)
        self.stamp = _apache_time(wall)
        return self.stamp

    def exchange(self, ex, duration: float) -> None:
        """One line per exchange, whatever its end; bytes sent are those that left us."""
        head = ex.head
        if head is not None:
            # (An HTTP/2 stream's head was converted for the HTTP/1.1 backend: the stream says it.)
            request = head.raw[:head.line_end] if not ex.client.http2 else ex.client.request_line
            spans = head.spans        # (no call for a field the head's scan did not find)
            referer = head.get(b"referer") if b"referer" in spans else None
            agent = head.get(b"user-agent") if b"user-agent" in spans else None
        else:
            request = getattr(ex, "refused_line", None)      # (set only then: ClientConnection.refuse)
            referer = agent = None
        labelled = ex.route if ex.route is not None else getattr(ex, "refused_by", None)   # (worker.policy)
        route = labelled.log_name if labelled is not None else b"-"
        backend = ex.origin.log_name if ex.origin is not None else b"-"
        status = ex.status or (499 if ex.aborted else 0)
        mark = b"X" if ex.aborted else (b"+" if ex.keep_alive else b"-")
        micros = duration * 1_000_000       # (%d truncates a float itself: no int() call)
        if self.json:
            micros = int(micros)
            self.sink.write(json.dumps({
                "time": _iso_time(time.time() - duration), "client": ex.client_ip.decode(),
                "request": _json_text(request), "status": status, "bytes_sent": ex.sent,
                "bytes_received": ex.received, "duration_us": micros,
                "route": labelled.name if labelled is not None else "-",
                "backend": backend.decode(), "referer": _json_text(referer), "user_agent": _json_text(agent),
                "connection": {b"X": "aborted", b"+": "keep-alive", b"-": "close"}[mark],
            }) + "\n")
            return
        now = self.loop.now
        start = now - duration
        stamp = self.stamp if self.stamp_until - 1.0 <= start < self.stamp_until else self._stamp(start, now)
        if not request or request.translate(_MARK) is not request:     # _quote's test, without the call
            request = _quote(request)
        body = ex.sent - ex.head_sent
        # One format per line, whole (each extra `%` was ~700 instructions): %b's "-" for no body
        # is the other template's ("%.0s" of b"" prints nothing), not a second format.
        self.add((_LINE if body > 0 else _LINE_NO_BODY) % (
            ex.client_ip, stamp, request, status, body if body > 0 else b"", _quote(referer) if referer else b"-",
            _quote(agent) if agent else b"-", micros, route, backend, mark))

    def add(self, line: bytes) -> None:
        """A whole line (this format's, also when the keep-alive lane wrote it: worker/_lane_log.c)."""
        sink = self.sink
        if sink.pending and sink.size <= MAX_PENDING and not sink.dropped:   # write_bytes's usual case, inline
            sink.pending.append(line)
            sink.size += len(line)
        else:
            sink.write_bytes(line)

    def tunnel(self, context: dict, bytes_in: int, bytes_out: int, duration: float, reason: str) -> None:
        """One line when a tunnel ends, in the exchange's shape (review 2026-12-04-logs #7): the
        upgrade request, 101 (200 for an HTTP/2 stream, RFC 8441), %b the bytes relayed to the
        client after the 101 head (nginx's $body_bytes_sent), %X `-` for a tunnel both sides
        closed and `X` for any other end; then the bytes each way, heads included, and why."""
        received = bytes_in + context.get("head_size", 0)
        status = context.get("status", 101)
        request = f"{context['method']} {context['target']} HTTP/{context['version']}"
        micros = int(duration * 1_000_000)
        clean = reason == "closed"
        if self.json:
            self.sink.write(json.dumps({
                "time": _iso_time(time.time() - duration), "client": context["client"],
                "request": _json_text(request.encode("latin-1")), "status": status, "bytes_sent": bytes_out,
                "bytes_received": received, "duration_us": micros, "route": context["route"],
                "backend": context["backend"], "referer": _json_text(context["referer"].encode("latin-1")),
                "user_agent": _json_text(context["agent"].encode("latin-1")),
                "connection": "close" if clean else "aborted", "tunnel": True,
                "tunnel_bytes_in": bytes_in, "tunnel_bytes_out": bytes_out, "tunnel_end": reason}) + "\n")
            return
        body = bytes_out - context.get("head_sent", 0)
        self.sink.write(
            f'{context["client"]} - - {_apache_time(time.time() - duration).decode()} '
            f'"{_text(request.encode("latin-1"))}" {status} '
            f'{body if body > 0 else "-"} "{_text(context["referer"].encode("latin-1"))}" '
            f'"{_text(context["agent"].encode("latin-1"))}" {micros} "{_text(context["route"].encode())}" '
            f'"{_text(context["backend"].encode())}" {"-" if clean else "X"} '
            f'tunnel_in={bytes_in} tunnel_out={bytes_out} end="{reason}"\n')


LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class ErrorLog:
    """`[time] [level] [pid N slot K gen G] message`."""

    def __init__(self, sink: LogSink, level: str, who: str):
        self.sink = sink
        self.threshold = LEVELS[level]
        self.who = who

    def __call__(self, level: str, message: str) -> None:
        if LEVELS[level] >= self.threshold:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            self.sink.write(f"[{stamp}] [{level}] [{self.who}] {message}\n")
