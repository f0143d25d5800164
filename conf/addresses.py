"""Listen addresses, target URLs, and resolving backend host names.

Each parser raises ValueError with an operator-facing message; the loader adds
FILE:LINE.  Resolution happens here, once, at load time: a worker's event loop
must never block on DNS, so every backend reaches the workers as a ready sockaddr.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

BACKEND_SCHEMES = ("http", "https", "ws", "wss")
TLS_SCHEMES = ("https", "wss")
DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}

# `$N` in a ProxyPassMatch target.  One digit, as in Apache's ap_pregsub: "$10" is
# group 1 followed by "0".  Workers substitute with this same pattern.
DOLLAR_GROUP = re.compile(r"\$(\d)")


def compile_template(path: str) -> tuple:
    """"/x/$1/y" -> (b"/x/", 1, b"/y"): the literals and group numbers of a ProxyPassMatch
    target, in order, for a worker to fill in without parsing it per request."""
    parts: list = []
    pos = 0
    for m in DOLLAR_GROUP.finditer(path):
        parts.append(path[pos:m.start()].encode("latin-1"))
        parts.append(int(m.group(1)))
        pos = m.end()
    parts.append(path[pos:].encode("latin-1"))
    return tuple(p for p in parts if p != b"")


BALANCER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def parse_listen(text: str) -> tuple[str, int, int]:
    """'127.0.0.1:8000' / '[::1]:8000' / '*:80' / 'localhost:80' -> (numeric host, port, family)."""
    text = text.strip()
    if text.startswith("["):
        inside, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"listen address '{text}' must look like \"[::1]:8000\"")
        host_text, port_text = inside, rest[1:]
    else:
        host_text, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"listen address '{text}' has no port; write \"HOST:PORT\", e.g. \"127.0.0.1:{text}\""
                             if text.isdigit() else f"listen address '{text}' must be \"HOST:PORT\"")
        if ":" in host_text:
            raise ValueError(f"listen address '{text}': put an IPv6 address in brackets, e.g. \"[::1]:8000\"")
    port = _port(port_text, f"listen address '{text}'")
    if port == 0:
        # Every worker binds its own SO_REUSEPORT socket to the same port, so an
        # ephemeral port (0) would give each one a different, unknowable port.
        raise ValueError(f"listen address '{text}': port 0 is not allowed (each worker binds the same port "
                         "with SO_REUSEPORT, so the port must be fixed)")
    if not host_text.isascii():     # an IPv6 scope (`%eth0`) is an interface name; others cannot be bound
        raise ValueError(f"listen address '{text}': the host must be ASCII")
    if host_text == "*":
        return "0.0.0.0", port, socket.AF_INET
    if host_text.lower() == "localhost":
        return "127.0.0.1", port, socket.AF_INET
    try:
        ip = ipaddress.ip_address(host_text)
    except ValueError:
        raise ValueError(f"listen address '{text}': host must be a numeric IP address, 'localhost' or '*', "
                         f"not '{host_text}'") from None
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    return str(ip), port, family


def _port(text: str, what: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 5:    # str.isdigit takes '８' and '²' too
        shown = text if len(text) <= 12 else text[:12] + "..."
        raise ValueError(f"{what}: port '{shown}' is not a number from 1 to 65535")
    port = int(text)
    if port > 65535:
        raise ValueError(f"{what}: port {port} is out of range (1-65535)")
    return port


@dataclass(frozen=True)
class ParsedURL:
    scheme: str       # http | https | ws | wss | balancer
    host: str         # host name or address, no brackets; the balancer's name for balancer://
    port: int         # 0 for balancer://
    path: str         # "/" at least


_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")


def parse_url(text: str, schemes: tuple[str, ...] = BACKEND_SCHEMES + ("balancer",)) -> ParsedURL:
    """Split a `to:` or member URL; only host, port and path are allowed."""
    text = text.strip()
    if _SPACE_OR_CONTROL.search(text):
        # urlsplit drops tabs and line breaks without a word: "http://b/\nadmin/" would send
        # to "/admin/", a URL the file does not show (review 2026-12-04-conf #10).
        raise ValueError(f"{text!r} holds a space or a control character; percent-encode it")
    scheme = text.partition("://")[0].lower() if "://" in text else ""
    if not scheme:
        raise ValueError(f"'{text}' is not a URL; expected e.g. \"http://127.0.0.1:9001/\"")
    if scheme not in schemes:
        raise ValueError(f"unsupported scheme '{scheme}' in '{text}' (use {', '.join(schemes)})")
    authority = text.split("://", 1)[1].split("/", 1)[0]
    if "$" in authority:
        raise ValueError(f"'{text}': $N substitution is only allowed in the path, not in the host or port")
    parts = urlsplit(text)
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise ValueError(f"'{text}' must not have a query or fragment")
    if "@" in parts.netloc:
        raise ValueError(f"'{text}' must not carry a user name or password")
    path = parts.path or "/"
    if any(c.isspace() or not c.isascii() for c in path):
        raise ValueError(f"'{text}': the path must be ASCII without spaces (percent-encode other characters)")
    if scheme == "balancer":
        name = parts.netloc
        if not BALANCER_NAME.match(name):
            raise ValueError(f"'{text}' needs a balancer name, e.g. \"balancer://cluster/\"")
        return ParsedURL(scheme, name, 0, path)
    try:
        host, port = parts.hostname, parts.port
    except ValueError:   # urlsplit's own complaint ("Port out of range", non-numeric port)
        raise ValueError(f"'{text}' has an invalid port") from None
    if not host:
        raise ValueError(f"'{text}' has no host")
    if port == 0:
        raise ValueError(f"'{text}' has port 0")
    return ParsedURL(scheme, host, port or DEFAULT_PORTS[scheme], path)


class Resolver:
    """getaddrinfo once per distinct (host, port), at load time; failures remembered too."""

    def __init__(self):
        self._cache: dict[tuple[str, int], tuple[int, tuple] | str] = {}

    def resolve(self, host: str, port: int) -> tuple[int, tuple]:
        """(family, sockaddr) of the first address, or ValueError naming the host."""
        key = (host, port)
        if key not in self._cache:
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                family, _, _, _, sockaddr = infos[0]
                self._cache[key] = (family, sockaddr)
            except (OSError, UnicodeError, IndexError) as exc:
                reason = getattr(exc, "strerror", None) or str(exc) or "no addresses"
                self._cache[key] = f"cannot resolve backend host '{host}': {reason}"
        found = self._cache[key]
        if isinstance(found, str):
            raise ValueError(found)
        return found
