"""A head that arrives in parts (`worker.client`, `worker.response`): its bytes are fed to
llhttp as they come, so garbage is refused at once, not at the header timeout; the head is
parsed as a whole (`worker.http1`) once its end is there."""

from __future__ import annotations

from worker.headchecks import (
    NO_CALLBACKS,
    REQUEST_PARSER,
    RESPONSE_PARSER,
    TOKEN,
    HttpError,
    check_fields,
    check_request_line,
    validate,
    validate_request,
)
from worker.http1 import HEAD_END, request_head_from, response_head_from


class HeadReader:
    """A head that arrives in parts: `feed(buffer)` gives llhttp what is new (so garbage is
    refused at once, not at the header timeout) and returns the head's length once it is
    complete (the bytes after it stay in the buffer), else 0.  Then `head(raw)`."""

    __slots__ = ("parser", "fed", "is_request", "limits", "line_checked", "method_part")

    def __init__(self, is_request: bool, limits=None):
        self.is_request = is_request
        self.limits = limits
        self.parser = (REQUEST_PARSER if is_request else RESPONSE_PARSER)(NO_CALLBACKS)
        self.fed = 0
        self.line_checked = False
        self.method_part = 0         # bytes of a request's first line known to be a token, no space

    def feed(self, buffer, end: int = -1) -> int:
        """`end`: where HEAD_END starts in `buffer` when the caller knows it already."""
        if end < 0:
            end = buffer.find(HEAD_END, max(self.fed - 3, 0))
        stop = end + 4 if end >= 0 else len(buffer)
        if self.is_request:
            limits = self.limits
            line_end = buffer.find(b"\r\n", 0, stop)
            if line_end < 0:
                if stop > limits.request_line:
                    raise HttpError(414, "request line too long")
            elif not self.line_checked:   # (not `fed <= line_end`: a CR fed alone is before its LF)
                check_request_line(buffer, line_end, limits)
                self.line_checked = True
            if end >= 0:
                check_fields(buffer, line_end, stop, limits)
            elif stop - line_end > limits.header_fields * (limits.header_field + 2) + 2:
                raise HttpError(431, "request header fields too large")
        if stop > self.fed:
            if self.fed or not self.is_request:
                validate(self.parser, buffer[self.fed:stop], self.is_request)
            elif buffer.find(b" ", self.method_part, stop) >= 0:
                self.parser = validate_request(self.parser, buffer[:stop])[0]
            elif TOKEN.fullmatch(buffer, self.method_part, stop):
                # llhttp reads a method only once it is whole: it may not know it.  (What came
                # before is known to be a token already: a method sent a byte a read is not
                # scanned again from its start each time, review 2026-12-04-evening #3.)
                self.method_part = stop
                return 0
            else:
                validate(self.parser, buffer[:stop], True)
            self.fed = stop
        return stop if end >= 0 else 0

    def head(self, raw: bytes):
        """The head `feed` found complete (len(raw) == what it returned)."""
        if self.is_request:
            line_end = raw.find(b"\r\n")
            return request_head_from(raw, line_end, check_request_line(raw, line_end, self.limits))
        return response_head_from(raw, self.parser)
