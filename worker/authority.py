"""The authority of a request: a Host value checked (RFC 9112 §3.2), and an absolute-form
target split into its authority and its origin-form path.  `worker.http1` makes the Host of
a head that came with an absolute-form target its authority; `worker.routing` maps such a
target to origin-form."""

from __future__ import annotations

import re

# RFC 9112 §3.2: uri-host [ ":" port ]; reg-name, IPv4 or [IPv6]
_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(?::[0-9]*)?")
_REG_NAME = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~!$&'()*+,;=%-"

# Hosts found valid, remembered up to a bound: a proxy's traffic names a handful, and the
# check (a translate table built per call) was ~1,300 of a request's ~160,000 instructions;
# a lookup is ~100.  Once full it only stops remembering: a client sending many names pays
# the check, nobody else notices.
_VALID_HOSTS: dict = {}
_VALID_HOSTS_MAX = 256


def valid_host(host: bytes) -> bool:
    """uri-host [ ":" port ] (RFC 9112 §3.2), the usual reg-name or IPv4 form checked
    without a regular expression."""
    if host in _VALID_HOSTS:
        return True
    name, colon, port = host.rpartition(b":") if b":" in host else (host, b"", b"")
    if (not name.translate(None, _REG_NAME) and (not port or port.isdigit())) or _HOST.fullmatch(host) is not None:
        if len(_VALID_HOSTS) < _VALID_HOSTS_MAX:
            _VALID_HOSTS[host] = None
        return True
    return False


def absolute_form(target: bytes) -> tuple[bytes, bytes] | None:
    """"http://host:port/path?q" -> (b"host:port", b"/path?q"); None if not http(s) absolute-form."""
    lower = target[:8].lower()
    if lower.startswith(b"http://"):
        start = 7
    elif lower.startswith(b"https://"):
        start = 8
    else:
        return None
    end = start
    while end < len(target) and target[end] not in b"/?":
        end += 1
    path = target[end:]
    return target[start:end], path if path[:1] == b"/" else b"/" + path
