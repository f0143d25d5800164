"""Access and error logs that never block the loop.

Lines are queued and written once per loop iteration with non-blocking writes; what
the destination cannot take stays queued, and past MAX_PENDING bytes new lines are
dropped and counted (a stuck log reader must not stall traffic).  For stdout/stderr
we reopen the descriptor through /proc so O_NONBLOCK is ours alone and does not leak
into the shell or the master that share the original open file description.
"""

from __future__ import annotations

import json
import os
import time

MAX_PENDING = 4 * 1024 * 1024


def _open_target(target: str, std_fd: int) -> int | None:
    if target == "off":
        return None
    if target == "-":
        try:
            return os.open(f"/proc/self/fd/{std_fd}", os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK)
        except OSError:
            return os.dup(std_fd)   # e.g. a socket (journald): blocking, but the reader is fast
    return os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o644)


class LogSink:
    def __init__(self, target: str, std_fd: int):
        self.fd = _open_target(target, std_fd)
        self.pending: list[bytes] = []
        self.size = 0
        self.dropped = 0

    @property
    def enabled(self) -> bool:
        return self.fd is not None

    def write(self, line: str) -> None:
        if self.fd is None:
            return
        if self.size > MAX_PENDING:
            self.dropped += 1
            return
        data = line.encode("utf-8", "backslashreplace")
        self.pending.append(data)
        self.size += len(data)

    def flush(self) -> None:
        if not self.pending:
            return
        data = b"".join(self.pending)
        try:
            written = os.write(self.fd, data)
        except (BlockingIOError, InterruptedError):
            written = 0
        except OSError:
            written = len(data)   # the destination is gone; nothing better to do with the lines
        rest = data[written:]
        self.pending = [rest] if rest else []
        self.size = len(rest)
        if self.dropped and not rest:     # say what a stuck reader cost, once it reads again
            self.pending.append(f"[{self.dropped} log lines dropped: the log destination was not reading]\n"
                                .encode())
            self.size = len(self.pending[-1])
            self.dropped = 0

    def close(self) -> None:
        if self.fd is not None:
            for _ in range(100):           # bounded: best effort at exit
                if not self.pending:
                    break
                self.flush()
                if self.pending:
                    time.sleep(0.01)
            os.close(self.fd)
            self.fd = None


class _Clock:
    """Apache's %t, formatted once a second."""

    def __init__(self) -> None:
        self.second = -1
        self.text = ""

    def apache(self) -> str:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.text = time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(now))
        return self.text


_clock = _Clock()


def _quote(value: bytes | None) -> str:
    if not value:
        return "-"
    return value.decode("latin-1").replace("\\", "\\\\").replace('"', '\\"')


class AccessLog:
    """Apache's combined format (%b: body bytes) plus %D (microseconds), route and backend;
    or JSON, whose bytes_sent counts the head too (Apache's %O)."""

    def __init__(self, sink: LogSink, fmt: str):
        self.sink = sink
        self.json = fmt == "json"

    def exchange(self, client_ip: bytes, head, status: int, sent: int, body_sent: int, received: int,
                 duration: float, route: str, backend: str) -> None:
        if head is not None:
            request = f"{head.method.decode('latin-1')} {head.target.decode('latin-1')} HTTP/{head.version}"
            referer, agent = head.get(b"referer"), head.get(b"user-agent")
        else:
            request, referer, agent = "-", None, None
        micros = int(duration * 1_000_000)
        if self.json:
            record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "client": client_ip.decode(),
                      "request": request, "status": status, "bytes_sent": sent, "bytes_received": received,
                      "duration_us": micros, "route": route, "backend": backend,
                      "referer": _quote(referer), "user_agent": _quote(agent)}
            self.sink.write(json.dumps(record) + "\n")
            return
        self.sink.write(
            f'{client_ip.decode()} - - {_clock.apache()} "{_quote(request.encode("latin-1"))}" {status} '
            f'{body_sent or "-"} "{_quote(referer)}" "{_quote(agent)}" {micros} "{route}" "{backend}"\n')


    def tunnel(self, context: dict, bytes_in: int, bytes_out: int, duration: float, reason: str) -> None:
        """One line when a tunnel ends: the upgrade request, 101, bytes each way (heads included)."""
        received = bytes_in + context.get("head_size", 0)
        request = f"{context['method']} {context['target']} HTTP/{context['version']}"
        micros = int(duration * 1_000_000)
        if self.json:
            self.sink.write(json.dumps({
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "client": context["client"], "request": request,
                "status": 101, "bytes_sent": bytes_out, "bytes_received": received, "duration_us": micros,
                "route": context["route"], "backend": context["backend"], "referer": context["referer"] or "-",
                "user_agent": context["agent"] or "-", "tunnel": True, "tunnel_bytes_in": bytes_in,
                "tunnel_bytes_out": bytes_out, "tunnel_end": reason}) + "\n")
            return
        self.sink.write(
            f'{context["client"]} - - {_clock.apache()} "{_quote(request.encode("latin-1"))}" 101 {bytes_out or "-"} '
            f'"{_quote(context["referer"].encode("latin-1"))}" "{_quote(context["agent"].encode("latin-1"))}" '
            f'{micros} "{context["route"]}" "{context["backend"]}" tunnel_in={bytes_in} tunnel_out={bytes_out} '
            f'end="{reason}"\n')


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
