"""An operator's regular expression (a route's `match:`, its `when:` conditions) searched in
request bytes within a time limit.

Python's `re` backtracks without bound: `^/(a+)+$` against a 64-byte path of a's and a "!"
runs for minutes, and one such request stopped its worker's loop, every connection on it
waiting for the watchdog (review 2026-12-04-conf #5).  nginx and Apache match with PCRE, whose
match limit (10,000,000 steps) ends such a search with an error; nginx then answers 500.  So
do we, after `LIMIT` of CPU time.

Patterns are the `regex` module's (mrab-regex, compiled by conf), searched with `timeout=`:
it reads the process's CPU clock inside its matching loops, so a worker the scheduler leaves
waiting in the middle of a quick search answers no 500, and the limit holds whatever the
pattern.  A timer signal around `re` did not: sre checks for signals only between steps of
its outer loop, and a single-character repeat (`[^;]*=`) scans the rest of the subject within
one, so a `when:` on a header repeated 97 times (780 KB) held the worker 4.2 s against a 10 ms
limit (review 2026-12-04-session-diff R1).  Each search has its own limit, as PCRE's applies
per call.

Cost: a search with `timeout=` takes 3.0 µs where one without takes 0.46 (a short subject):
6,000 `match:` routes tried in turn cost 31 ms a request (review 2026-12-04-fixes #3).  So only
patterns whose search can cost more than linear time pay it (`needs_limit`): the usual
`Upgrade: websocket`, and what import-apache writes for `ProxyPass /app` (`^/app((?:/.*)?)$`:
anchored, one repeat), are searched without.
"""

from __future__ import annotations

import warnings

import regex

try:
    from re import _constants as sre
    from re import _parser as sre_parse
except ImportError:                 # Python 3.10
    import sre_constants as sre
    import sre_parse

LIMIT = 0.01            # seconds of CPU per search; PCRE's 10,000,000 steps take about as long
_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT, getattr(sre, "POSSESSIVE_REPEAT", sre.MAX_REPEAT))
_ANCHORS = (sre.AT_BEGINNING, sre.AT_BEGINNING_STRING)


class RegexTimeout(Exception):
    """A search ran past LIMIT; `route`: the routing.CompiledRoute it was for."""

    def __init__(self, route=None):
        super().__init__(route)
        self.route = route


def bounded_search(pattern: regex.Pattern):
    """`pattern`'s search function: with a timeout (TimeoutError past LIMIT) unless its cost
    is linear in the subject."""
    if not needs_limit(pattern):
        return pattern.search

    def search(subject: bytes):
        return pattern.search(subject, timeout=LIMIT)
    return search


def needs_limit(pattern: regex.Pattern) -> bool:
    """False when a search costs at most linear time: no repeat of more than one, or anchored at
    the start with one such repeat and no alternative inside it (tried from one place, one way
    to split).  Read with `re`'s parser, which reads the common syntax as `regex` does; a
    pattern holding what the two may read otherwise ("{" for a fuzzy count, "[[" for a POSIX
    class, a back-reference), or that `re` cannot read, is limited."""
    text = pattern.pattern
    if b"{" in text or b"[[" in text or b"\\" in text and regex.search(rb"\\[1-9gkp]", text):
        return True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = sre_parse.parse(text, pattern.flags & (regex.I | regex.M | regex.S | regex.X))
    except Exception:       # noqa: BLE001 - whatever re cannot read: limited
        return True
    shape = {"repeats": 0, "branch_in_repeat": False, "backref": False}
    _walk(tree, False, shape)
    if shape["backref"] or shape["branch_in_repeat"]:
        return True
    if shape["repeats"] == 0:
        return False
    anchored = len(tree) > 0 and tree[0][0] is sre.AT and tree[0][1] in _ANCHORS and not pattern.flags & regex.M
    return not (anchored and shape["repeats"] == 1)


def _walk(items, in_repeat: bool, shape: dict) -> None:
    for op, av in items:
        if op in _REPEATS:
            low, high, body = av
            many = high > 1
            shape["repeats"] += many
            _walk(body, in_repeat or many, shape)
        elif op is sre.BRANCH:
            shape["branch_in_repeat"] |= in_repeat
            for branch in av[1]:
                _walk(branch, in_repeat, shape)
        elif op in (sre.GROUPREF, sre.GROUPREF_EXISTS):
            shape["backref"] = True
        else:
            for part in av if isinstance(av, (tuple, list)) else (av,):
                if isinstance(part, sre_parse.SubPattern):
                    _walk(part, in_repeat, shape)
