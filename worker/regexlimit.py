"""An operator's regular expression (a route's `match:`, its `when:` conditions) searched in
request bytes within a time limit.

Python's `re` backtracks without bound: `^/(a+)+$` against a 64-byte path of a's and a "!"
runs for minutes, and one such request stopped its worker's loop, every connection on it
waiting for the watchdog (review 2026-12-04-conf #5).  No check at load time can tell which
patterns are safe.  nginx and Apache match with PCRE, whose match limit (10,000,000 steps) ends
such a search with an error; nginx then answers 500.  So do we, after `LIMIT` of CPU time.

The search is the `regex` module's (mrab-regex, `re`'s syntax), with `timeout=`: it reads the
process's CPU clock inside its matching loops, so a worker the scheduler leaves waiting in the
middle of a quick search answers no 500, and the limit holds whatever the pattern.  A timer
signal around `re` did not: sre checks for signals only between steps of its outer loop, and
a single-character repeat (`[^;]*=`, `\\s*=\\s*$`) scans the rest of the subject within one, so
a `when:` on a header repeated 97 times (780 KB) held the worker 4.2 s against a 10 ms limit
(review 2026-12-04-session-diff R1).  `regex` also fails such searches at once: it knows the
"=" must appear, as PCRE does.  Each search has its own limit, as PCRE's applies per call.

Cost: a search with `timeout=` takes 3.0 µs where `re` takes 0.2-0.5 µs (a short subject).
Only patterns that can backtrack pay it (conf.routes.may_backtrack): one without a repeat or an
alternative matches only strings of its own length, so its search is linear in the subject and
stays `re`'s (the usual `Upgrade: websocket` condition, a literal `match`).
"""

from __future__ import annotations

import re

import regex

from conf.routes import may_backtrack

LIMIT = 0.01            # seconds of CPU per search; PCRE's 10,000,000 steps take about as long
# The flags `re` and `regex` share, with the same values.
_FLAGS = re.IGNORECASE | re.MULTILINE | re.DOTALL | re.VERBOSE


class RegexTimeout(Exception):
    """A search ran past LIMIT; `route`: the routing.CompiledRoute it was for."""

    def __init__(self, route=None):
        super().__init__(route)
        self.route = route


def bounded_search(pattern: re.Pattern):
    """`pattern`'s search function: `re`'s own when it cannot backtrack, else one that raises
    TimeoutError past LIMIT.  Raises regex.error for a pattern the `regex` module reads
    otherwise than `re` (conf refuses those: conf.routes)."""
    if not may_backtrack(pattern):
        return pattern.search
    compiled = regex.compile(pattern.pattern, pattern.flags & _FLAGS)

    def search(subject: bytes):
        return compiled.search(subject, timeout=LIMIT)
    return search
