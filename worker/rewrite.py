"""Rewriting heads as they cross the proxy (mod_proxy_http's rules).

Hop-by-hop headers (RFC 9110 §7.6.1) stop here: Connection and every header it
names, Keep-Alive, TE, Trailer, Proxy-Connection, and Upgrade unless the exchange is
an upgrade.  Transfer-Encoding stays, because bodies are relayed with their framing.
"""

from __future__ import annotations

from worker.http1 import connection_tokens

HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"te", b"trailer", b"proxy-connection", b"upgrade"})
_SET_BY_US = frozenset({b"host", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"})
_REQUEST_SKIP = HOP_BY_HOP | _SET_BY_US
REVERSED = frozenset({b"location", b"content-location", b"uri"})
CRLF = b"\r\n"


def _skip_set(headers, base: frozenset) -> frozenset:
    """`base` plus every header named by any Connection line (there may be several)."""
    named = None
    for name, _, value in headers:
        if name == b"connection":
            named = connection_tokens(value) if named is None else named | connection_tokens(value)
    return base if named is None else base | named


def request_head(head, target: bytes, host: bytes, client_ip: bytes, proto: bytes,
                 upgrade: bytes | None) -> bytes:
    """The head sent to the backend: always HTTP/1.1, keep-alive by default."""
    skip = _skip_set(head.headers, _REQUEST_SKIP)
    out = [head.method, b" ", target, b" HTTP/1.1\r\nHost: ", host, CRLF]
    forwarded_for = None
    for name, raw_name, value in head.headers:
        if name in skip:
            if name == b"x-forwarded-for":
                forwarded_for = value if forwarded_for is None else forwarded_for + b", " + value
            continue
        out += (raw_name, b": ", value, CRLF)
    out += (b"X-Forwarded-For: ", forwarded_for + b", " + client_ip if forwarded_for else client_ip, CRLF,
            b"X-Forwarded-Proto: ", proto, CRLF)
    if head.host:
        out += (b"X-Forwarded-Host: ", head.host, CRLF)
    if upgrade is not None:
        out += (b"Upgrade: ", upgrade, b"\r\nConnection: Upgrade\r\n")
    out.append(CRLF)
    return b"".join(out)


def response_head(resp, keep_alive: bool, client_http10: bool, keep_chunked: bool,
                  reverse: tuple | None, upgrade: bool = False) -> bytes:
    """The head sent to the client.

    `reverse` is (backend URL prefix, client URL prefix) for ProxyPassReverse, or None.
    `keep_chunked` False drops Transfer-Encoding (a chunked body de-chunked for an
    HTTP/1.0 client).  `upgrade` keeps Upgrade and says `Connection: Upgrade` (101).
    """
    skip = _skip_set(resp.headers, HOP_BY_HOP)
    if upgrade:
        skip = skip - {b"upgrade"}
    out = [b"HTTP/1.1 ", str(resp.status).encode(), b" ", resp.reason, CRLF]
    for name, raw_name, value in resp.headers:
        if name in skip:
            continue
        if name == b"transfer-encoding" and not keep_chunked:
            continue
        if reverse is not None and name in REVERSED and value.startswith(reverse[0]):
            value = reverse[1] + value[len(reverse[0]):]
        out += (raw_name, b": ", value, CRLF)
    if upgrade:
        out.append(b"Connection: Upgrade\r\n")
    elif not keep_alive:
        out.append(b"Connection: close\r\n")
    elif client_http10:
        out.append(b"Connection: keep-alive\r\n")
    out.append(CRLF)
    return b"".join(out)


def error_response(status: int, reason: str, message: str, keep_alive: bool = False) -> bytes:
    body = f"<!DOCTYPE html>\n<title>{status} {reason}</title>\n<h1>{reason}</h1>\n<p>{message}</p>\n".encode()
    connection = b"keep-alive" if keep_alive else b"close"
    return b"".join((
        f"HTTP/1.1 {status} {reason}\r\n".encode(),
        b"Content-Type: text/html; charset=utf-8\r\nContent-Length: ", str(len(body)).encode(),
        b"\r\nConnection: ", connection, b"\r\n\r\n", body))
