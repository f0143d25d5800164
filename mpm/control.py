"""The control socket: JSON lines over a Unix socket, one request per connection.

`{"cmd": "status"}`, `{"cmd": "reload"}`, `{"cmd": "stop", "now": false}`; the answer
is one JSON line, at once or, for a handler that returns `Later`, when it has one (a reload's
answer waits until its generation serves alone: mpm.settling).  The master's loop serves it
with non-blocking sockets, reading and writing: a stuck client (one that never sends, or never
reads its answer) costs a descriptor until CLIENT_TIMEOUT, never the master's attention, and
at most MAX_CLIENTS are held at once.
When all are taken, a newcomer replaces the oldest (of those not waiting for a `Later` answer)
only once that one has had REPLACE_GRACE to say what it wants; until then the socket is not watched and newcomers wait in its backlog
(a client's blocking connect waits for room: `request` below).
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import selectors
import socket
import stat
import struct
import time

log = logging.getLogger("mpm.master")
MAX_REQUEST = 64 * 1024
CLIENT_TIMEOUT = 5.0
MAX_CLIENTS = 16          # at once (HAProxy's `stats maxconn` is 10)
REPLACE_GRACE = 0.5       # seconds a client holds its place before a newcomer may take it
ACCEPT_PAUSE = 1.0        # seconds the socket is not watched after accept() ran out of descriptors
OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class Later:
    """What a handler returns to answer later: the client is held up to `within` seconds (and
    CLIENT_TIMEOUT more to read the answer), and `send(answer)` answers it, if it is still there."""

    __slots__ = ("within", "send")

    def __init__(self, within: float):
        self.within = within
        self.send = _nobody     # the ControlServer's, once it holds the client (gone already: nobody's)


def _nobody(answer: dict) -> None:
    """Where an answer goes whose client left before it could be held."""


class ControlServer:
    def __init__(self, path: str, selector, handler):
        self.path = path
        self.selector = selector
        self.handler = handler
        self.clients: dict[socket.socket, list] = {}    # sock -> [request read | answer unsent, deadline, since]
        self.paused_until = 0.0                          # accept() ran out of descriptors: not watched until
        self.watched = False                             # the listening socket is in the selector
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.lexists(path):
            _claim(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        os.chmod(path, 0o600)
        bound = os.stat(path)
        self.identity = (bound.st_dev, bound.st_ino)     # a rename() keeps it: how we know our file moved
        self.sock.listen(16)
        self.sock.setblocking(False)
        self._watch(time.monotonic())

    def _room(self, now: float) -> bool:
        """A newcomer can be taken now: a place is free, or the oldest client has had its grace
        (a leaky script must not lock mpmctl out).  Replacing at once lost requests: in a burst
        of 40 mpmctl runs the master took a newcomer before it had read an older client's
        request, and the older one met a closed socket (BrokenPipe, 1 CI run in 6)."""
        if len(self.clients) < MAX_CLIENTS:
            return True
        oldest = self._replaceable()
        return oldest is not None and self.clients[oldest][2] + REPLACE_GRACE <= now

    def _replaceable(self) -> socket.socket | None:
        """The oldest client a newcomer may replace: any but one whose answer comes later
        (`_hold`: since = inf)."""
        return next((client for client, state in self.clients.items() if state[2] != math.inf), None)

    def _watch(self, now: float) -> None:
        """The listening socket is watched exactly when accept() may run: not within an
        out-of-descriptors pause, and with room for a newcomer."""
        wanted = not self.paused_until and self._room(now) and self.sock.fileno() >= 0
        if wanted and not self.watched:
            self.selector.register(self.sock, selectors.EVENT_READ, self._accept)
        elif self.watched and not wanted:
            self.selector.unregister(self.sock)
        self.watched = wanted

    def _accept(self) -> None:
        now = time.monotonic()
        if not self._room(now):
            self._watch(now)
            return
        try:
            client, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if exc.errno in OUT_OF_DESCRIPTORS:
                # The connection stays queued and the socket readable: retried at once, this
                # spun the loop and logged a traceback per turn.  Asyncio and nginx back off too.
                log.error("control socket: cannot accept (%s); not accepting for %.0f s", exc.strerror, ACCEPT_PAUSE)
                self.paused_until = now + ACCEPT_PAUSE
                self._watch(now)
            return
        if len(self.clients) >= MAX_CLIENTS:
            self._drop(self._replaceable())       # (`_room` found one)
        client.setblocking(False)
        self.clients[client] = [b"", now + CLIENT_TIMEOUT, now]
        self.selector.register(client, selectors.EVENT_READ, lambda: self._read(client))
        self._watch(now)

    def _read(self, client: socket.socket) -> None:
        state = self.clients[client]
        try:
            data = client.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(client)
            return
        state[0] += data
        if b"\n" not in state[0] and len(state[0]) < MAX_REQUEST:
            return
        try:
            request = json.loads(state[0].split(b"\n", 1)[0])
        except (ValueError, RecursionError) as exc:     # (deep nesting: "[" * 60000)
            answer = {"ok": False, "errors": [f"bad request: {str(exc)[:200]}"]}
        else:
            try:
                answer = self.handler(request if isinstance(request, dict) else {})
            except Exception:       # noqa: BLE001 - one request's failure must not take the master down
                log.exception("control socket: a request failed")
                answer = {"ok": False, "errors": ["internal error (see the error log)"]}
        if client not in self.clients:      # (a stop's handler may have closed us meanwhile)
            return
        if isinstance(answer, Later):
            self._hold(client, answer)
        else:
            self._answer(client, json.dumps(answer).encode() + b"\n")

    def _hold(self, client: socket.socket, later: Later) -> None:
        """Keep `client` until `later.send` answers it.  Never the one a newcomer replaces
        (`_room`): dropped, its mpmctl would take the reload for unanswered and signal a second
        one (mpm.settling holds at most a few at once)."""
        state = self.clients[client]
        state[1] = time.monotonic() + later.within + CLIENT_TIMEOUT
        state[2] = math.inf
        later.send = lambda answer: self._answer_later(client, answer)
        self.selector.modify(client, selectors.EVENT_READ, lambda: self._held(client))

    def _held(self, client: socket.socket) -> None:
        """A client whose answer comes later said more (ignored: one request per connection)
        or ended its side: no longer watched, and still answered.  A half-close is how
        `socat` and `nc -N` say that the request is complete, and they wait for the answer; one
        that has gone meets a failed send, and is dropped then (or at its deadline)."""
        try:
            if client.recv(4096):
                return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(client)      # reset: nobody to answer
            return
        self.selector.unregister(client)     # EOF: readable for good, so not watched any more

    def _answer_later(self, client: socket.socket, answer: dict) -> None:
        if client in self.clients:      # (it may have hung up meanwhile)
            self._answer(client, json.dumps(answer).encode() + b"\n")

    def _answer(self, client: socket.socket, data: bytes) -> None:
        """Send what the socket takes now; the rest as it drains (EVENT_WRITE), within the
        client's deadline.  A client that does not read (a `balancer` answer of 1,500 members is
        ~500 KB, beyond a Unix socket's buffer) costs a descriptor, never the master's loop."""
        state = self.clients[client]
        state[0] = memoryview(data)
        state[1] = time.monotonic() + CLIENT_TIMEOUT
        try:
            self.selector.modify(client, selectors.EVENT_WRITE, lambda: self._write(client))
        except KeyError:            # a held client that half-closed (`_held`)
            self.selector.register(client, selectors.EVENT_WRITE, lambda: self._write(client))
        self._write(client)

    def _write(self, client: socket.socket) -> None:
        state = self.clients[client]
        try:
            sent = client.send(state[0])
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            sent = len(state[0])        # gone: nothing more to say
        state[0] = state[0][sent:]
        if not state[0]:
            self._drop(client)

    def _drop(self, client: socket.socket) -> None:
        self.clients.pop(client, None)
        try:
            self.selector.unregister(client)
        except (KeyError, ValueError):
            pass
        client.close()
        self._watch(time.monotonic())       # a place is free

    def tick(self, now: float) -> None:
        """From the master's housekeeping: clients past their deadline go (they went only when
        another client arrived), and a paused socket is watched again (the pause is over, or the
        oldest client's grace is)."""
        for client, (_, deadline, _) in list(self.clients.items()):
            if deadline < now:
                self._drop(client)
        if self.paused_until and now >= self.paused_until:
            self.paused_until = 0.0
        self._watch(now)

    def holds(self, path: str) -> bool:
        """`path` is our socket's file (bound there, or renamed there since)."""
        try:
            found = os.stat(path)
        except OSError:
            return False
        return (found.st_dev, found.st_ino) == self.identity and self.sock.fileno() >= 0

    def moved_to(self, path: str) -> bool:
        """True once our socket's file is `path` (`mpmctl upgrade`: the master we replace renames
        it there when it hands over); from then on `close` unlinks that path."""
        if self.path != path and self.holds(path):
            self.path = path
        return self.path == path

    def close_in_child(self) -> None:
        """In a forked worker: drop our copies without unlinking the master's socket file."""
        for client in list(self.clients):
            client.close()
        self.sock.close()

    def close(self, unlink: bool = True) -> None:
        """`unlink=False` when the path now belongs to the master that replaced us.  Even
        then a file at the path that is not ours stays: a new master of a release before the
        hand-over by rename binds the path itself at its start, and this removed its socket
        for good (review 2026-12-04-versions r03)."""
        if self.sock.fileno() < 0:
            return
        unlink = unlink and self.holds(self.path)
        for client in list(self.clients):
            self._drop(client)
        if self.watched:
            self.selector.unregister(self.sock)
            self.watched = False
        self.sock.close()
        if unlink:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def _claim(path: str) -> None:
    """Remove a stale socket left at `path` (a master that crashed); raise OSError rather than
    delete anything else: a file that is not a socket (a typo naming the config file or the
    pidfile), or a socket someone still answers on (a master with another pidfile)."""
    if not stat.S_ISSOCK(os.lstat(path).st_mode):
        raise OSError(errno.EEXIST, f"control socket {path} exists and is not a socket: not replaced")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError:         # refused: nobody listens there any more
            pass
        else:
            raise OSError(errno.EADDRINUSE, f"another process answers on the control socket {path}")
    os.unlink(path)


def request(path: str, payload: dict, timeout: float = 30.0) -> dict:
    """Client side (mpmctl): send one request, read one answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        # A blocking connect with SO_SNDTIMEO: while the master's backlog is full (a burst of
        # mpmctl runs, a leaky script), the kernel waits for room up to `timeout`.  With
        # settimeout() the socket is non-blocking underneath and a Unix connect to a full
        # backlog fails at once with EAGAIN ("does not answer", 17 of 40 concurrent runs).
        seconds = int(timeout)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                        struct.pack("ll", seconds, int((timeout - seconds) * 1_000_000)))
        sock.connect(path)
        sock.settimeout(timeout)
        sock.sendall(json.dumps(payload).encode() + b"\n")
        return read_answer(sock)


def read_answer(sock: socket.socket) -> dict:
    """The master's one JSON line (ValueError if the connection ended without one)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return json.loads(data)
