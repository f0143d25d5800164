"""An operator's regular expression (a route's `match:`, its `when:` conditions) run against
request bytes within a time limit.

Python's `re` backtracks without bound: `^/(a+)+$` against a 64-byte path of a's and a "!"
runs for minutes, and one such request stopped its worker's loop, every connection on it
waiting for the watchdog (review 2026-12-04-conf #5).  No check at load time can tell which
patterns are safe (even `x.*y` unanchored takes 38 ms on an 8 KB field here).  nginx and
Apache match with PCRE, whose match limit (10,000,000 steps) ends such a search with an
error; nginx then answers 500.  So do we, after `LIMIT` of CPU time: the search runs under a
one-shot ITIMER_VIRTUAL timer, and sre checks for signals every 4096 steps, so the handler's
exception ends it within about a millisecond of the limit.  CPU time, not wall-clock time: a
worker the scheduler leaves waiting for 10 ms in the middle of a quick search (routine on a
busy 2-core machine) must not answer 500.

The limit is per routing of a request (routing.Router.resolve), all its searches together.
Cost: two `setitimer` calls, about 2 µs per request (measured: 0.5-0.7 µs for an untimed
`^/api/(.*)$` search, 2.8-3.1 µs timed), paid only where some route's pattern holds a repeat
or an alternative (routing._may_backtrack: `Upgrade: websocket` does not).  The worker's
signal set-up (worker.signals) wakes its loop for the SIGVTALRM: nothing to do there.
"""

from __future__ import annotations

import signal
import threading

LIMIT = 0.01            # seconds; PCRE's 10,000,000 steps take about as long


class RegexTimeout(Exception):
    """A search ran past LIMIT; `route`: the routing.CompiledRoute it was for (set by the router)."""

    def __init__(self, route=None):
        super().__init__(route)
        self.route = route


_armed = False          # a timed search is running: the timer's signal is for it
_installed = False


def _expired(signum, frame) -> None:
    # Python runs a handler between bytecodes, maybe after the search it was for ended: then
    # `_armed` is off, or a later search has armed a timer of its own that is still running.
    if _armed and signal.getitimer(signal.ITIMER_VIRTUAL)[0] == 0:
        raise RegexTimeout()


def _install() -> bool:
    """The SIGVTALRM handler, set at the first search (only the main thread can, and a process
    that never routes, the master, never needs one)."""
    global _installed
    if threading.current_thread() is not threading.main_thread():
        return False
    signal.signal(signal.SIGVTALRM, _expired)
    _installed = True
    return True


def within_limit(call, *args):
    """`call(*args)` (the router's scan, with its regex searches) within LIMIT of CPU time;
    raises RegexTimeout past it."""
    global _armed
    if not _installed and not _install():
        return call(*args)
    _armed = True
    signal.setitimer(signal.ITIMER_VIRTUAL, LIMIT)
    try:
        return call(*args)
    finally:
        # A signal that came in just before the disarm raises here: the scan did take LIMIT.
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        _armed = False
