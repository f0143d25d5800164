"""A handler of ours that raises (a bug): the one connection it served ends, the worker goes on.

A worker carries thousands of connections and WebSocket tunnels in one loop, so an
exception escaping `EventLoop.run` would end all of them for one bad request.  An exception
unwinds Python's stack cleanly; only the state of the object whose handler raised is
suspect.  So the loop hands it here (`contain`), and:

- the object the raising callable belongs to (the bound method's `__self__`, also inside a
  `functools.partial`, which is why callbacks are never lambdas: a client
  connection, an exchange, a backend connection, a tunnel, an HTTP/2 connection or stream,
  an arrival, a lingering socket) is ended through its `abandon()`, the way a reset would
  end it: its exchange aborted, the balancer member's busy count and the backend connection
  given back (closed, never pooled), its fds closed and out of epoll, its per-client counts
  released, one access-log line;
- the traceback goes to the error log, once per place it was raised from per
  REPORT_INTERVAL (a bug that a client can trigger at will must not fill the disk): the
  repeats in between are counted in the next report;
- what has no `abandon()` is the worker's own machinery (the acceptor, signals, the
  hand-over, timers such as the heartbeat): nothing there can be ended alone, so the worker
  recycles itself (`on_worker_fault`), as MaxConnectionsPerChild does: it stops accepting,
  hands its plain tunnels and idle connections to the replacement the master starts, and
  the rest finish within graceful_timeout.  The fd that raised leaves epoll, so that a
  level-triggered event does not raise again on every turn meanwhile.

Not contained: what is not an `Exception` (SystemExit, KeyboardInterrupt: a way out that was
asked for), and MemoryError: allocation failing leaves no promise that logging or the
close paths can run, and a fresh process from the master is the way back.

The normal path pays nothing: the loop's `try` costs no instruction in Python 3.11 until
something raises, and nothing here runs before then.
"""

from __future__ import annotations

import traceback
from functools import partial

REPORT_INTERVAL = 60.0     # seconds between two tracebacks raised from the same place
PLACES_KEPT = 256          # report times remembered (places in our code: few; bounded all the same)


class Faults:
    def __init__(self, loop, log_error, on_worker_fault) -> None:
        self.loop = loop
        self.log_error = log_error
        self.on_worker_fault = on_worker_fault
        self.reported: dict[tuple, list] = {}     # place -> [next report time, repeats not reported]
        self.contained = 0                        # faults ended with their connection

    def contain(self, exc: Exception, callback, fd: int | None) -> None:
        """`callback` (an fd's handler, a deadline, a timer or a callable of `call_soon`)
        raised `exc`; `fd`: the descriptor whose event it handled, if any."""
        if isinstance(exc, MemoryError):
            raise exc
        method = callback.func if type(callback) is partial else callback     # call_soon(partial(self.m, arg))
        owner = getattr(method, "__self__", None)
        abandon = getattr(owner, "abandon", None)
        if abandon is not None:
            self._report(exc, f"internal error in {owner.__class__.__name__}: its connection is closed")
            try:
                abandon()
            except Exception as again:    # its own close path is broken too: as the worker's own
                if isinstance(again, MemoryError):
                    raise
                self._report(again, f"internal error closing {owner.__class__.__name__}")
            else:
                self.contained += 1
                if fd is not None and getattr(self.loop.handlers.get(fd), "__self__", None) is owner:
                    self.loop.remove(fd)     # still there (it thought itself closed): must not spin
                return
        else:
            self._report(exc, f"internal error in {getattr(callback, '__qualname__', callback)!s}: "
                              "the worker recycles itself")
        if fd is not None:
            self.loop.remove(fd)
        self.on_worker_fault()

    def _report(self, exc: Exception, what: str) -> None:
        frames = traceback.extract_tb(exc.__traceback__)
        where = frames[-1] if frames else None
        place = (exc.__class__, where.filename, where.lineno) if where is not None else (exc.__class__,)
        now = self.loop.now
        seen = self.reported.get(place)
        if seen is not None and now < seen[0]:
            seen[1] += 1
            return
        if seen is None and len(self.reported) >= PLACES_KEPT:
            self.reported.clear()
        repeats = seen[1] if seen is not None else 0
        self.reported[place] = [now + REPORT_INTERVAL, 0]
        also = f" ({repeats} more from the same place since the last report)" if repeats else ""
        text = "".join(traceback.format_exception(exc)).rstrip("\n")
        self.log_error("error", f"{what}{also}\n{text}")
