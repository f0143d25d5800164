"""Corrections to a backend's response head that llhttp accepts but a client must not get
(`worker.http1.response_head_from` finds them; the corrected bytes are parsed again there
and never relayed as they came):

- control bytes in the reason phrase (RFC 9112 §4 allows HTAB, SP, VCHAR and obs-text;
  llhttp lets NUL and the others through): the status's standard phrase instead.  The
  phrase is advisory, so the response is still worth relaying (nginx and HAProxy relay
  any reason as it came; refusing it with 502 would cost the client its answer).
- Content-Length or Transfer-Encoding on a 1xx or 204: dropped (RFC 9110 §8.6 and §6.1: a
  server MUST NOT send them there; a client that believed them would take the first bytes
  of the next response for this one's body).  The body is framed by the status all the
  same (`ResponseHead.body_framing`).

Cold code, kept out of `worker.http1`, whose usual head pays only the tests that find these.
"""

from __future__ import annotations

import http
import re

CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")      # not in a reason-phrase
FRAMING = (b"content-length", b"transfer-encoding")


def reason_phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def with_standard_reason(raw: bytes, parts: list, line_end: int, status: int) -> bytes:
    """`raw` with its status line's reason replaced (`parts`: the line split in three)."""
    return b"%s %s %s" % (parts[0], parts[1], reason_phrase(status).encode()) + raw[line_end:]


def without_lines(raw: bytes, spans: dict, names: tuple) -> bytes:
    """`raw` without the field lines of `names` (`spans` as in `worker.http1.Head`)."""
    cuts = sorted(span for name in names for span in spans.get(name, ()))
    pieces, pos = [], 0
    for start, end, _ in cuts:
        pieces.append(raw[pos:start])
        pos = end
    pieces.append(raw[pos:])
    return b"".join(pieces)
