"""The fields of an HTTP/1.1 head the proxy acts on, and where they are (`scan_fields`).

A head's fields are found in its lower-cased bytes by one case-sensitive regular expression
(`FIELDS_RE`): llhttp has validated the lines, so "\nname:" can only start a field, and the
request or status line holds no "\n".  Every Python-level operation costs about a thousand
instructions here, so one scan beats a `find` per name (the same pattern with IGNORECASE on
the raw head cost twice as much).

The C head codec (worker/_heads.c, _heads_read.c, _heads_write.c) does the same scan, reads
the usual request and response heads whole, and puts the head toward the backend together;
this module picks it where it is built, unless MPM_NATIVE_HEADS=0.  Without it, the Python
does all of that: `scan_in_python` here, and worker.http1 and worker.rewrite for the rest,
which stay the reference for every head (tests/test_head_codec.py holds the two alike; CI
runs the HTTP modules once more with MPM_NATIVE_HEADS=0).
"""

from __future__ import annotations

import importlib.util
import os
import re

from worker.framing import FORWARDING_SPELLINGS

NATIVE = os.environ.get("MPM_NATIVE_HEADS", "1") != "0" and importlib.util.find_spec("worker._heads") is not None
# Referer and User-Agent are there for the access log, which would otherwise look for each;
# Forwarded for worker.rewrite, which drops a client's own.
FIELDS = (b"host", b"content-length", b"transfer-encoding", b"connection", b"upgrade", b"keep-alive", b"te",
          b"trailer", b"proxy-connection", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host",
          b"referer", b"user-agent", b"forwarded")
# X-Forwarded-* in every spelling with "_" for a "-" too: CGI, WSGI, PHP and Rack read both as
# one, so a client's X_Forwarded_Proto beside ours made Django take http for https; found here
# under the name as spelled, for worker.rewrite to drop (review 2026-12-04-differential #2).
FIELDS_RE = re.compile(rb"\n(" + b"|".join(f for f in FIELDS if f not in FORWARDING_SPELLINGS)
                       + rb"|x[-_]forwarded[-_](?:for|proto|host)):[ \t]*([^\r]*)")
SCANNED = frozenset(FIELDS)     # what Head.get need not look for again


def scan_in_python(raw: bytes) -> tuple:
    """(raw lower-cased, {name: [(start, end, value start), ...]}) for the fields the proxy acts
    on that are present: raw[start:end] is b"\r\nName: value"."""
    lower = raw.lower()
    spans: dict = {}
    for m in FIELDS_RE.finditer(lower):
        value_start, end = m.span(2)
        name = m[1]
        found = spans.get(name)
        if found is None:
            spans[name] = [(m.start() - 1, end, value_start)]
        else:
            found.append((m.start() - 1, end, value_start))
    return lower, spans


# The slots of worker.http1's heads in the order worker/_heads_read.c fills them.
REQUEST_SLOTS = ("raw", "line_end", "method", "target", "version", "lower", "spans", "host", "content_length",
                 "connection", "keep_alive", "chunked", "upgrade", "framing_line")
RESPONSE_SLOTS = ("raw", "line_end", "status", "version", "reason", "lower", "spans", "content_length", "chunked",
                  "connection", "keep_alive", "upgrade", "plain")


def _unusual(*_) -> None:
    """Without the C, every head is read by worker.http1's Python."""
    return None


def slots_of(cls) -> set:
    return {name for klass in cls.__mro__ for name in getattr(klass, "__slots__", ())}


def make_heads_as(request_class, response_class, hop_by_hop) -> None:
    """Tell the C which classes its heads are (worker.http1's), once they exist.  A slot the C
    does not fill would be missing from every usual head: refused here, at import (built or not,
    so a slot added to a head class fails every test run until the C fills it)."""
    for cls, order in ((request_class, REQUEST_SLOTS), (response_class, RESPONSE_SLOTS)):
        if slots_of(cls) != set(order):
            raise RuntimeError(f"worker.headscan: {cls.__name__}'s slots are {sorted(slots_of(cls))}; "
                               f"worker/_heads_read.c fills {sorted(order)}")
    if NATIVE:
        _heads.set_head_types(request_class, REQUEST_SLOTS, response_class, RESPONSE_SLOTS,
                              tuple(sorted(hop_by_hop)))


if NATIVE:
    from worker import _heads
    _heads.set_names(tuple(FIELDS) + tuple(FORWARDING_SPELLINGS - set(FIELDS)))
    scan_fields, usual_request_head, usual_response_head = _heads.scan, _heads.request, _heads.response
    joined_head = _heads.joined_head      # worker.rewrite's
else:
    scan_fields, usual_request_head, usual_response_head = scan_in_python, _unusual, _unusual
    joined_head = None
