"""The PROXY protocol (HAProxy's, v1 text and v2 binary): read on listeners that require it,
written to backends that ask for it.

An L4 balancer in front (HAProxy `send-proxy[-v2]`, AWS NLB, a fleet's own) opens the
connection, so the peer address is the balancer's; the header it sends first names the
client.  With `proxy_protocol: true` on a listener the header is required: it is read before
TLS or HTTP, and the address it carries is the client's everywhere (logs, X-Forwarded-For,
hash balancing, limits).  A missing, malformed or oversized header, or one not complete
within `timeouts.client_header`, closes the connection.  LOCAL (v2) and UNKNOWN (v1)
headers, which a balancer sends for its own health checks, keep the peer address.

Reading never blocks and never takes a byte past the header (the bytes after it are a TLS
ClientHello or the HTTP request, which their own readers must see): each readiness event
peeks at what is there, and consumes all of it while the header is incomplete (it can only
be header), or exactly the header once its end is known.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

from worker.arrival import Arrival
from worker.backend import private_key
from worker.loop import EPOLLIN

V1_MAX = 107                     # the spec's bound, CRLF included
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_MAX = 16 + 2048               # header + addresses + TLVs we accept (SSL and unique-id TLVs fit)
_V1_PREFIX = b"PROXY "
_V2_INET = struct.Struct("!4s4sHH")
_V2_INET6 = struct.Struct("!16s16sHH")


class BadHeader(ValueError):
    pass


def _port(text: bytes) -> int:
    if not text.isdigit() or len(text) > 5 or (len(text) > 1 and text[0] == 48) or int(text) > 65535:
        raise BadHeader("bad port")
    return int(text)


def _v1(line: bytes):
    """b"PROXY TCP4 src dst sport dport" (without CRLF) -> addresses, or None (UNKNOWN)."""
    parts = line.split(b" ")
    if len(parts) >= 2 and parts[1] == b"UNKNOWN":
        return None
    if len(parts) != 6 or parts[1] not in (b"TCP4", b"TCP6"):
        raise BadHeader("malformed v1 header")
    family = socket.AF_INET if parts[1] == b"TCP4" else socket.AF_INET6
    try:
        src = socket.inet_ntop(family, socket.inet_pton(family, parts[2].decode("ascii")))
        dst = socket.inet_ntop(family, socket.inet_pton(family, parts[3].decode("ascii")))
    except (OSError, UnicodeDecodeError, ValueError):
        raise BadHeader("bad address in v1 header") from None
    return src.encode(), _port(parts[4]), dst.encode(), _port(parts[5])


def _v2(data: bytes, length: int):
    ver_cmd, family = data[12], data[13]
    if ver_cmd >> 4 != 2 or ver_cmd & 0xF > 1:
        raise BadHeader("bad v2 version or command")
    body = data[16:16 + length]
    if ver_cmd & 0xF == 0:                      # LOCAL: the balancer's own connection
        return None
    af, transport = family >> 4, family & 0xF
    if transport not in (0, 1) or af > 3:       # STREAM or UNSPEC over an address family we know
        raise BadHeader("bad v2 address family or transport")
    if af == 1:
        if length < _V2_INET.size:
            raise BadHeader("short v2 IPv4 addresses")
        src, dst, sport, dport = _V2_INET.unpack_from(body)
        return socket.inet_ntop(socket.AF_INET, src).encode(), sport, socket.inet_ntop(socket.AF_INET, dst).encode(), dport
    if af == 2:
        if length < _V2_INET6.size:
            raise BadHeader("short v2 IPv6 addresses")
        src, dst, sport, dport = _V2_INET6.unpack_from(body)
        return (socket.inet_ntop(socket.AF_INET6, src).encode(), sport,
                socket.inet_ntop(socket.AF_INET6, dst).encode(), dport)
    return None                                 # UNSPEC or a Unix socket: no address to use


def parse(data: bytes):
    """(size, addresses) once `data` starts with a whole header; (0, None) while it is a
    valid beginning of one; raises BadHeader otherwise.  addresses is (src ip, src port,
    dst ip, dst port) as bytes and ints, or None to keep the peer's."""
    if data[:1] == b"P":
        if not _V1_PREFIX.startswith(data[:6]):
            raise BadHeader("not a PROXY protocol header")
        end = data.find(b"\r\n", 0, V1_MAX)
        if end < 0:
            if len(data) >= V1_MAX or b"\n" in data:
                raise BadHeader("v1 header too long or without CRLF")
            return 0, None
        return end + 2, _v1(data[:end])
    if data[:1] == b"\r":
        if not V2_SIGNATURE.startswith(data[:12]):
            raise BadHeader("not a PROXY protocol header")
        if len(data) < 16:
            return 0, None
        length = int.from_bytes(data[14:16], "big")
        if 16 + length > V2_MAX:
            raise BadHeader("v2 header too large")
        if len(data) < 16 + length:
            return 0, None
        return 16 + length, _v2(data, length)
    raise BadHeader("not a PROXY protocol header")


# == sending to a backend ======================================================================
def _address(text: bytes):
    address = ipaddress.ip_address(text.decode("ascii"))
    return address.ipv4_mapped or address if address.version == 6 else address


def header(version: int, src: bytes, sport: int, dst: bytes, dport: int) -> bytes:
    """The header naming `src` as the client: v1 text or v2 binary (HAProxy's send-proxy[-v2]).
    An IPv4 address paired with an IPv6 one is written IPv4-mapped, as both must share a family."""
    try:
        source, target = _address(src), _address(dst)
    except ValueError:
        return b"PROXY UNKNOWN\r\n" if version == 1 else V2_SIGNATURE + b"\x20\x00\x00\x00"
    if source.version != target.version:
        source, target = (ipaddress.IPv6Address("::ffff:" + str(a)) if a.version == 4 else a
                          for a in (source, target))
    if version == 1:
        family = b"TCP4" if source.version == 4 else b"TCP6"
        return b"PROXY %s %s %s %d %d\r\n" % (family, str(source).encode(), str(target).encode(), sport, dport)
    if source.version == 4:
        return V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", _V2_INET.size) + \
            _V2_INET.pack(source.packed, target.packed, sport, dport)
    return V2_SIGNATURE + b"\x21\x21" + struct.pack("!H", _V2_INET6.size) + \
        _V2_INET6.pack(source.packed, target.packed, sport, dport)


PRIVATE_KEYS_MAX = 4     # clients one connection keeps private backend connections for


def for_exchange(ex) -> bytes:
    """The header for an exchange's fresh backend connection: the client as the exchange sees
    it (a PROXY-carried address keeps its port and destination), else the socket's own ends."""
    client = ex.client
    proxied = client.proxied
    if proxied is not None and proxied[0] == ex.client_ip:
        src, sport, dst, dport = proxied
    else:
        sock = client.conn.ep.sock if client.http2 else client.ep.sock    # an HTTP/2 stream: its connection's
        try:
            peer, local = sock.getpeername(), sock.getsockname()
        except OSError:
            peer, local = ("0.0.0.0", 0), ("0.0.0.0", 0)
        src, dst, dport = ex.client_ip, local[0].encode(), local[1]
        sport = peer[1] if ex.client_ip == client.client_ip else 0
    return header(ex.origin.proxy_protocol, src, sport, dst, dport)


def private_header(ex) -> bytes:
    """`for_exchange`, for a connection that speaks for the one client connection it names
    (address, port, and where it came to): the header is its private pool's key too
    (worker.backend.private_key).  The client connection (an HTTP/2 stream's: its
    connection) notes the key, and drops those pooled connections when it closes."""
    header = for_exchange(ex)
    owner = ex.client.conn if ex.client.http2 else ex.client
    if owner.private is None:
        owner.private = {}
    key = private_key(ex.origin, header)
    if key not in owner.private:
        # A trusted proxy's connection speaks for a new client (X-Forwarded-For) per request,
        # perhaps: its oldest client's idle connections go, not one pool per client it ever named.
        if len(owner.private) >= PRIVATE_KEYS_MAX:
            oldest = next(iter(owner.private))
            del owner.private[oldest]
            ex.worker.pool.drop_idle((oldest,))
        owner.private[key] = None
    return header


class HeaderReader(Arrival):
    """An accepted connection on a `proxy_protocol` listener until its header is read; then
    `worker.admission.header_read(...)` carries on with TLS or HTTP."""

    __slots__ = ("worker", "loop", "sock", "fd", "peer", "context", "deadline", "since", "data")

    def __init__(self, worker, sock: socket.socket, peer: bytes, context):
        self.worker = worker
        self.loop = loop = worker.loop
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer
        self.context = context
        self.since = loop.now
        self.deadline = loop.now + worker.timeouts.client_header
        self.data = b""
        loop.add(self.fd, EPOLLIN, self.on_event)
        loop.timed.add(self)
        worker.admission.unserved[self] = None

    def on_event(self, mask: int) -> None:
        try:
            peeked = self.sock.recv(V2_MAX - len(self.data), socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            peeked = b""
        if not peeked:
            self.close()
            return
        data = self.data + peeked
        try:
            size, addresses = parse(data)
        except BadHeader as exc:
            self.fail(str(exc))
            return
        try:
            self.sock.recv(size - len(self.data) if size else len(peeked))    # what was header, no more
        except OSError:
            self.close()
            return
        if not size:
            self.data = data
            return
        self._done(addresses)

    def _done(self, addresses) -> None:
        self._forget()
        self.loop.remove(self.fd)
        self.worker.admission.header_read(self.sock, self.peer, self.context, addresses, self.deadline)

    def on_deadline(self) -> None:
        self.fail("no complete PROXY protocol header in time")

    def fail(self, why: str) -> None:
        self.worker.log_error("info", f"{self.peer.decode()} closed: {why}")
        self.close()

    def _forget(self) -> None:
        self.loop.timed.discard(self)
        self.worker.admission.unserved.pop(self, None)
