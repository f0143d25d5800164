"""Where log lines go: a sink that never blocks the loop.

Lines are queued and written with non-blocking writes; what the destination cannot
take stays queued, and past MAX_PENDING bytes new lines are dropped and counted (a
stuck log reader must not stall traffic).  For stdout/stderr we reopen the descriptor
through /proc so O_NONBLOCK is ours alone and does not leak into the shell or the
master that share the original open file description.  A socket cannot be reopened so
(under systemd, stdout and stderr are journald's stream socket): it is written with
send(MSG_DONTWAIT), non-blocking for that call only.

A buffered sink (the access log) is written as nginx's `access_log ... buffer= flush=` is:
when ACCESS_BUFFER bytes are queued, the oldest queued line is ACCESS_FLUSH seconds old or
the loop has an idle moment, and at once when the worker starts to stop (reload, recycle,
`mpmctl stop`) and when it exits, so no graceful path loses a line.  What the lines say is
`worker.logs`'.
"""

from __future__ import annotations

import errno
import functools
import os
import select
import socket
import stat
import time
from collections import deque

MAX_PENDING = 4 * 1024 * 1024
ACCESS_BUFFER = 64 * 1024    # bytes of access-log lines written at once
ACCESS_FLUSH = 1.0           # seconds a queued access-log line may wait while the loop is busy
REOPEN_INTERVAL = 5.0        # seconds between two tries to open a log target that would not open
_SEND_FLAGS = socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL
WRITE_CHUNK = 64 * 1024       # bytes joined for one write (a pipe takes 64 KiB at most)
# A pipe or FIFO is shared by every worker (and the master, for "-"): a write of at most
# PIPE_BUF bytes goes in whole or not at all (POSIX), a longer one may go in part and another
# process's lines then land in the middle of a line.  So to a pipe lines go PIPE_BUF bytes at a
# time, cut at a line's end (Apache writes a line per write() for the same reason); only a line
# longer than PIPE_BUF can still be cut.
PIPE_CHUNK = select.PIPE_BUF
NOT_READING = "the log destination was not reading"
BACKED_OFF = 2 * MAX_PENDING   # `limit` while the destination is not taking lines: never reached


def _open_target(target: str, std_fd: int) -> int | None:
    if target == "off":
        return None
    if target == "-":
        try:
            return os.open(f"/proc/self/fd/{std_fd}", os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK)
        except OSError:
            # A socket (ENXIO), or a pipe we may not reopen (EACCES: a non-root process whose
            # stdout pipe is root's, as in a container with a non-root USER; ENOENT without
            # /proc): `_writer` writes to it without blocking all the same.
            return os.dup(std_fd)
    return os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o644)


def _writer(fd: int, mode: int, sock: socket.socket | None):
    """The call that writes bytes to the target now or not at all, never waiting: send with
    MSG_DONTWAIT on a socket; `write` on a descriptor opened non-blocking or a regular file;
    and for a pipe, FIFO or terminal whose descriptor blocks (the dup above: a blocking write
    there held the worker in pipe_write until the reader read, review 2026-12-04-logs #1),
    `_write_nowait`."""
    if sock is not None:
        return lambda data: sock.send(data, _SEND_FLAGS)
    if stat.S_ISREG(mode) or not os.get_blocking(fd):
        return functools.partial(os.write, fd)
    return _write_nowait(fd)


def _write_nowait(fd: int):
    """pwritev with RWF_NOWAIT where the kernel and the C library have it for this kind of
    descriptor (pipes since Linux 6.4; not FIFOs opened by name, nor terminals); elsewhere a
    poll for room first, with writes of at most PIPE_BUF (`_chunk_for`): never O_NONBLOCK on
    the description, which we share with whoever started us (a shell's terminal; review
    2026-12-04-today #1, #3, #6)."""
    nowait = [getattr(os, "RWF_NOWAIT", 0) and hasattr(os, "pwritev")]
    poller = select.poll()
    poller.register(fd, select.POLLOUT)

    def write(data) -> int:
        if nowait[0]:
            try:
                return os.pwritev(fd, (data,), -1, os.RWF_NOWAIT)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ESPIPE):
                    raise
                nowait[0] = False
        if not poller.poll(0):
            raise BlockingIOError(errno.EAGAIN, "the log reader takes nothing now")
        return os.write(fd, data)
    return write


def _chunk_for(mode: int, sock: socket.socket | None) -> int:
    """Bytes joined for one write: whole lines of at most PIPE_BUF to what other processes
    write to as well (a pipe, a FIFO, a terminal: see PIPE_CHUNK), a socket's kernel buffer,
    WRITE_CHUNK to a file."""
    if sock is not None:
        return _socket_chunk(sock)
    if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
        return PIPE_CHUNK
    return WRITE_CHUNK


def _say(text: str) -> None:
    """A word on stderr that cannot block: stderr is often a pipe or journald's socket, and the
    one that stops reading when a disk fills is the one said to (a blocking write here held the
    worker in pipe_write until the reader read again).  Through a non-blocking open of our own,
    as `_open_target` does, or send(MSG_DONTWAIT) on a socket; what does not fit is lost (the
    count of dropped lines follows in the log itself)."""
    data = text.encode("utf-8", "backslashreplace")
    try:
        fd = os.open("/proc/self/fd/2", os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK)
    except OSError:                    # a socket (ENXIO), or no descriptor left
        try:
            with socket.socket(fileno=os.dup(2)) as sock:
                sock.send(data, _SEND_FLAGS)
        except OSError:
            pass
        return
    try:
        os.write(fd, data)
    except OSError:
        pass                           # full, or stderr is the log that fails
    finally:
        os.close(fd)


def _socket_chunk(sock: socket.socket) -> int:
    """Bytes per send to a stream socket shared with other processes (journald's, under
    systemd): a Unix stream send that fits one buffer of the kernel's goes whole or not at all,
    a longer one may go in part, and another worker's line then lands inside ours (6 lines of
    725 spliced, review 2026-12-04-logs #2).  One such buffer is half the send buffer, less a
    header (unix_stream_sendmsg); PIPE_BUF at most, cut at line ends as for a pipe."""
    try:
        if sock.type != socket.SOCK_STREAM:
            return WRITE_CHUNK
        return max(min(PIPE_CHUNK, sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 2 - 64), 512)
    except OSError:
        return PIPE_CHUNK


def text_marker(count: int, reason: str) -> bytes:
    """The line that says how many lines were lost, where they were (see `write_bytes`)."""
    return f"[{count} log lines dropped: {reason}]\n".encode()


class LogSink:
    def __init__(self, target: str, std_fd: int, buffered: bool = False, wake=None, who: str = "mpm worker"):
        self.target, self.std_fd, self.who = target, std_fd, who
        self.open_error: OSError | None = None     # why the last open failed
        # `wake()` asks the loop for a turn soon (worker.process: a timer): a backlog the
        # destination takes in part is written on, as fast as it reads, even while no traffic
        # turns the loop (an idle loop turns every 0.25 s: 64 KiB each).
        self.wake = wake
        self.fd = None
        self.sock = None         # the target is a socket (journald's): written with send(MSG_DONTWAIT)
        self.put = None          # writes bytes without waiting, returns how many went (`_writer`)
        self.reopen_at = 0.0     # a target that would not open: when to try again
        self.chunk = WRITE_CHUNK # bytes joined for one write (PIPE_CHUNK to a pipe: whole lines)
        self._open()
        # What the loop checks after each turn (worker.loop): queued lines are written once
        # `now >= due`, `size >= limit`, or the turn was idle.  Unbuffered (the error log):
        # due 0 and limit 0, at once.  Buffered (the access log): limit ACCESS_BUFFER, and
        # `due` set when the first line is queued.  Inline in the loop: a call per turn to
        # ask was ~1,000 instructions, twice per small request.
        self.buffered = buffered
        self.limit = ACCESS_BUFFER if buffered else 0
        self.pending: deque[bytes] = deque()
        self.size = 0
        self.dropped = 0
        self.drop_reason = NOT_READING
        self.failure = None      # the error of the last write, while writes fail
        self.marker = text_marker    # the dropped lines' line, in the log's format (worker.logs: JSON)
        self.due = 0.0           # when the oldest queued line must be written

    @property
    def enabled(self) -> bool:
        return self.target != "off"

    def _open(self) -> bool:
        """A target that will not open (a FIFO nobody reads yet, a full disk after a rotation)
        must not stop the worker from serving: its lines are dropped and counted, it is said
        once on stderr, and the open is tried again every REOPEN_INTERVAL seconds."""
        try:
            self.fd = _open_target(self.target, self.std_fd)
        except OSError as exc:
            self.open_error = exc
            if not self.reopen_at:
                _say(f"{self.who} {os.getpid()}: cannot open log {self.target}: {exc.strerror or exc}; "
                     f"its lines are dropped until it opens\n")
            self.reopen_at = time.monotonic() + REOPEN_INTERVAL
            return False
        if self.fd is not None:
            self._adopt(self.fd)
        return True

    def _adopt(self, fd: int) -> None:
        """Write to `fd` from now on, the way its kind takes bytes."""
        mode = os.fstat(fd).st_mode
        self.fd = fd
        self.sock = socket.socket(fileno=fd) if stat.S_ISSOCK(mode) else None
        self.put = _writer(fd, mode, self.sock)
        self.chunk = _chunk_for(mode, self.sock)

    def reopen(self) -> None:
        """Let go of the file and open its path afresh: log rotation without a reload
        (`mpmctl reopen`, nginx's USR1).  What is queued is tried on the old file first, the
        rest goes to the new one.  A path that will not open now keeps the old file, said on
        stderr, as nginx keeps its descriptor.  stdout/stderr and "off" stay as they are."""
        if self.target in ("-", "off"):
            return
        if self.fd is None:              # not open (its lines are being dropped): try now
            self.reopen_at = 0.0
            self._open()
            return
        self.flush()
        try:
            fd = _open_target(self.target, self.std_fd)
        except OSError as exc:
            _say(f"{self.who} {os.getpid()}: cannot reopen log {self.target}: {exc.strerror or exc}; "
                 f"writing on to the file it had\n")
            return
        old, old_sock = self.fd, self.sock
        self._adopt(fd)
        if old_sock is not None:
            old_sock.close()
        else:
            os.close(old)

    def forget_in_child(self) -> None:
        """In a forked worker, the master's sink: its descriptor closed (a worker lives on
        across `mpmctl reopen`, and held a rotated, deleted error log's space until it exited;
        review 2026-12-04-today #5) and its queued lines left to the master (written twice, else).
        A line the worker logs through it later opens the path afresh."""
        if self.fd is not None:
            if self.sock is not None:
                self.sock.close()
            else:
                os.close(self.fd)
        self.fd = self.sock = None
        self.pending.clear()
        self.size = self.dropped = 0
        self.reopen_at = 0.0

    def write(self, line: str) -> None:
        self.write_bytes(line.encode("utf-8", "backslashreplace"))

    def write_bytes(self, data: bytes) -> None:
        if self.fd is None:
            if not self.enabled or time.monotonic() < self.reopen_at or not self._open():
                self.dropped += self.enabled
                return
        if self.size > MAX_PENDING:
            self.dropped += 1
            return
        if self.dropped and self.failure is None:
            # Where the gap is: before the first line queued after it, not after the lines
            # that came since (review 2026-12-04-logs #4).
            self._queue_marker()
        if self.buffered and not self.pending:
            self.due = time.monotonic() + ACCESS_FLUSH
        self.pending.append(data)
        self.size += len(data)

    def flush(self) -> None:
        """Write what is queued, WRITE_CHUNK bytes at a time: a reader that is behind costs one
        small join per try, not a copy of the whole queue (up to MAX_PENDING) per loop turn.
        Nothing while the target is not open (its lines were dropped: the count follows once
        a write opens it)."""
        if self.fd is None:
            return
        pending = self.pending
        progress = False
        if self.size <= self.chunk and self.limit != BACKED_OFF and not self.dropped and pending:
            written = self._write_all()     # the usual case: a reader that keeps up
            if not pending:
                return
            progress = written > 0
        while pending:
            data = self._chunk()
            try:
                written = self.put(data)
            except (BlockingIOError, InterruptedError):
                written = 0
            except OSError as exc:    # a full disk, a reader gone: the lines are lost, but said and counted
                self._failed(data, exc)
                written = len(data)
            else:
                if written:
                    self.failure = None
            if written < len(data):
                pending.appendleft(data[written:])
            self.size -= written
            progress = progress or written > 0
            if written < len(data):
                break
        if pending and progress and self.wake is not None:
            self.wake()
        if pending and not progress:
            # A reader that takes nothing: try again in ACCESS_FLUSH (or on an idle turn), not
            # every turn; the loop's size trigger is lifted meanwhile.
            self.due = time.monotonic() + ACCESS_FLUSH
            self.limit = BACKED_OFF
        elif self.limit == BACKED_OFF:      # it reads again: back to the usual triggers
            self.limit = ACCESS_BUFFER if self.buffered else 0
            if not self.buffered:
                self.due = 0.0
        if self.dropped and not pending and self.failure is None:   # what it cost, once it takes lines again
            self._queue_marker()

    def _queue_marker(self) -> None:
        line = self.marker(self.dropped, self.drop_reason)
        self.pending.append(line)
        self.size += len(line)
        self.dropped = 0
        self.drop_reason = NOT_READING

    def _write_all(self) -> int:
        """What `flush` does when the queue fits one write and the reader keeps up: one join,
        one write, nothing else looked at (the general loop costs ~1,800 instructions more, and
        an idle worker flushes once per request).  How many bytes went; the rest stays queued
        for the general path, which also tells the errors apart."""
        pending = self.pending
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        try:
            written = self.put(data)
        except OSError:
            return 0
        pending.clear()
        self.size -= written
        if written < len(data):
            pending.append(data[written:])
        else:
            self.failure = None
        return written

    def _failed(self, data: bytes, exc: OSError) -> None:
        """A write that failed: its lines are counted as dropped, and the first failure of a run
        is said on stderr (nginx logs its "write() failed" to the error log likewise)."""
        self.dropped += data.count(b"\n")
        reason = exc.strerror or str(exc)
        self.drop_reason = f"writing the log failed: {reason}"
        if self.failure != reason:
            self.failure = reason
            _say(f"mpm worker {os.getpid()}: cannot write log {self.target}: {reason}; "
                 f"its lines are dropped until it writes again\n")

    def _chunk(self) -> bytes:
        """The queued lines from the front, whole, up to `chunk` bytes (or the first alone, if
        longer), taken off the queue."""
        pending = self.pending
        parts, limit = [pending.popleft()], self.chunk
        size = len(parts[0])
        while pending and size + len(pending[0]) <= limit:
            parts.append(pending.popleft())
            size += len(parts[-1])
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        if self.fd is not None:
            for _ in range(100):           # bounded: best effort at exit
                if not self.pending:
                    break
                self.flush()
                if self.pending:
                    time.sleep(0.01)
            if self.sock is not None:
                self.sock.close()
                self.sock = None
            else:
                os.close(self.fd)
            self.fd = None
