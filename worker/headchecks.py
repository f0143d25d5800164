"""What is checked of an HTTP/1.1 head before it is read (`worker.http1` reads it).

llhttp (`httptools`) checks all of it: the request or status line, every field name and
value, and the request-smuggling shapes; it is given no per-field callback (`NO_CALLBACKS`:
calling into Python once per field was most of what a head cost), so its verdict is all it
gives (`validate`).  What llhttp leaves to us and Apache checks (DESIGN.md): the strict
request line, exactly "method SP target SP version", and the LimitRequestLine,
LimitRequestFields and LimitRequestFieldSize limits (`check_request_line`, `check_fields`).
A refusal is an `HttpError` with the status it is answered with.
"""

from __future__ import annotations

import re

import httptools

TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class HttpError(Exception):
    """A message we refuse: answered with `status` (400..505 for a request, 502 for a response)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message
        self.line = None      # the request line, once the head was whole: for the access log



class _NoCallbacks:
    """llhttp's protocol object: it has no `on_*` method, so the parser calls nothing."""

    __slots__ = ()


NO_CALLBACKS = _NoCallbacks()
REQUEST_PARSER = httptools.HttpRequestParser
RESPONSE_PARSER = httptools.HttpResponseParser


# llhttp knows a fixed table of methods.  One outside it of the shape nginx forwards (upper-case
# letters, "-" and "_": RFC 3253's VERSION-CONTROL and BASELINE-CONTROL, RFC 4437's
# MKREDIRECTREF, an API's private PURGE-ALL) is read by llhttp as POST, which it frames like any
# method without a meaning of its own, and goes to the backend as it came, as nginx, HAProxy and
# Apache forward them (review 2026-12-04-differential #4).  Another token ("get", "Get": RFC
# 9110's methods are case-sensitive, and a backend that folds case would take it for GET) is
# 501, as Apache answers a method it does not know; anything else is a bad request line (400).
EXTENSION_METHOD = re.compile(rb"[A-Z_-]+")
_STAND_IN = b"POST"
# llhttp knows RTSP's methods (PLAY, SETUP, DESCRIBE, GET_PARAMETER, ...) and refuses them in an
# HTTP request with this error rather than as unknown: they are extension methods here too
# (review 2026-12-04-evening #4).
_RTSP_METHOD = "Invalid method for HTTP/x.x request"


class ExtensionMethod(HttpError):
    """llhttp refused a method of EXTENSION_METHOD's shape: `validate_request` reads it again."""

    def __init__(self, method: bytes):
        super().__init__(501, f"method {method[:20]!r} not implemented")
        self.method = method


def validate(parser, data, is_request: bool) -> bool:
    """Feed llhttp; its verdict as an HttpError.  False: it stopped at an upgrade."""
    try:
        parser.feed_data(data)
    except httptools.HttpParserUpgrade:
        return False   # the head is complete; what follows belongs to the tunnel
    except httptools.HttpParserInvalidMethodError:
        raise _bad_method(data) if is_request else HttpError(502, "malformed status line") from None
    except httptools.HttpParserError as exc:
        if is_request and str(exc) == _RTSP_METHOD:
            raise _bad_method(data) from None
        raise HttpError(400 if is_request else 502, f"malformed head: {exc}") from None
    return True


def validate_request(parser, data) -> tuple:
    """`validate` of a request's first bytes, up to its method's space at least: the parser
    that read them (a fresh one, when llhttp did not know the method) and the verdict."""
    try:
        return parser, validate(parser, data, True)
    except ExtensionMethod as unknown:
        parser = REQUEST_PARSER(NO_CALLBACKS)
        return parser, validate(parser, _STAND_IN + data[len(unknown.method):], True)


def _bad_method(data) -> HttpError:
    space = data.find(b" ")
    method = bytes(data[:space]) if space > 0 else b""
    if EXTENSION_METHOD.fullmatch(method):
        return ExtensionMethod(method)
    if TOKEN.fullmatch(method):
        return HttpError(501, f"method {method[:20]!r} not implemented")
    return HttpError(400, "malformed request line")


def check_request_line(buffer, line_end: int, limits) -> list:
    """LimitRequestLine (414), and Apache's HttpProtocolOptions Strict request line:
    exactly "method SP target SP version".  Returns its three parts: split at the spaces,
    three non-empty parts are exactly two single spaces, neither at an end."""
    if line_end > limits.request_line:
        raise HttpError(414, "request line too long")
    parts = buffer[:line_end].split(b" ")
    if len(parts) != 3 or not parts[0] or not parts[1] or not parts[2]:
        raise HttpError(400, "malformed request line")
    return parts


def check_fields(buffer, line_end: int, stop: int, limits) -> None:
    """LimitRequestFields and LimitRequestFieldSize (431) on a complete head."""
    if buffer.count(b"\r\n", line_end, stop) - 2 > limits.header_fields:
        raise HttpError(431, "too many request header fields")
    if stop - line_end > limits.header_field:   # only then can one field be over the limit
        for line in bytes(buffer[line_end + 2:stop]).split(b"\r\n"):
            if len(line) > limits.header_field:
                raise HttpError(431, "request header field too large")
