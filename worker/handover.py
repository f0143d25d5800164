"""Passing live tunnels to another worker process (reload, recycling) without a byte lost.

Every worker listens on an abstract Unix SOCK_SEQPACKET socket named after its pid.
A worker told to stop gracefully, once the scoreboard shows it a successor (a worker
of a newer generation, or the replacement of its own slot when it recycles itself),
connects there and, tunnel by tunnel, stops relaying, sends both sockets (SCM_RIGHTS)
with the bytes it had read but not yet written, the half-close flags, the counters and
the idle deadline, and closes its copies.  The receiver resumes the tunnel with the same
`Tunnel` code, so the peers see a pause and nothing else.

Wire format, one tunnel after another on one connection (SEQPACKET keeps the boundaries):
    b"T" + JSON header + b"\\0" + up to CHUNK bytes     with the two fds attached
    b"D" + up to CHUNK bytes                         as often as the leftovers need
The header names the lengths of both leftovers (to_backend first, then to_client).

A tunnel is handed over once its fds are sent: if the receiver dies with them in
flight, that tunnel is lost (and only that); the sender logs how many it passed.
"""

from __future__ import annotations

import json
import os
import socket
import time

from tunnel.endpoint import Endpoint
from tunnel.tunnel import Tunnel
from worker.loop import EPOLLIN

CHUNK = 16 * 1024            # leftover bytes per record: with the header, well under a record's limit
SEND_TIMEOUT = 2.0           # a successor that cannot take a record within this is given up on
CONNECT_PATIENCE = 3.0       # how long to look for a successor that is still starting
# Records in flight are tunnels paused: a small send buffer keeps the queue at the receiver
# short (about 50 records), and the sender's other tunnels relay on while it waits.
SEND_BUFFER = 32 * 1024
# The kernel doubles SO_SNDBUF, and a SEQPACKET record larger than the sender's buffer is
# refused (EMSGSIZE): no record is longer than this, so the receiver never truncates one.
RECORD_MAX = 2 * SEND_BUFFER


def address(pid: int) -> bytes:
    return f"\0mpm-handover-{pid}".encode()


class HandoverReceiver:
    """The listening end, registered in the worker's loop."""

    def __init__(self, worker):
        self.worker = worker
        self.loop = worker.loop
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        self.sock.bind(address(os.getpid()))
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.loop.add(self.sock.fileno(), EPOLLIN, self._accept)
        self.pauses: list[float] = []       # seconds from detach to resume, per tunnel

    def _accept(self, mask: int) -> None:
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        conn.setblocking(False)
        _Inbound(self, conn)

    def close(self) -> None:
        self.loop.remove(self.sock.fileno())
        self.sock.close()


class _Inbound:
    """One sender's stream of tunnels."""

    def __init__(self, receiver: HandoverReceiver, conn: socket.socket):
        self.receiver = receiver
        self.worker = receiver.worker
        self.conn = conn
        self.pending = None            # (client, backend, header, bytearray) while data is due
        self.received = 0
        receiver.loop.add(conn.fileno(), EPOLLIN, self._on_event)

    def _on_event(self, mask: int) -> None:
        while True:
            try:
                message, fds, _, _ = socket.recv_fds(self.conn, RECORD_MAX, 2)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                message, fds = b"", []
            if not message:
                self._finish()
                return
            try:
                self._record(message, fds)
            except (ValueError, KeyError) as exc:
                for fd in fds:
                    os.close(fd)
                self.worker.log_error("error", f"hand-over: bad record ({exc}); dropping the stream")
                self._finish()
                return

    def _record(self, message: bytes, fds: list[int]) -> None:
        kind = message[:1]
        if kind == b"T":
            if len(fds) != 2:
                raise ValueError(f"a tunnel record carries {len(fds)} fds")
            header, _, data = message[1:].partition(b"\0")
            client = socket.socket(fileno=fds[0])
            backend = socket.socket(fileno=fds[1])
            self.pending = (client, backend, json.loads(header), bytearray(data))
        elif kind == b"D" and self.pending is not None:
            self.pending[3].extend(message[1:])
        else:
            raise ValueError(f"unexpected record {kind!r}")
        client, backend, header, data = self.pending
        if len(data) < header["to_backend"] + header["to_client"]:
            return
        self.pending = None
        split = header["to_backend"]
        client.setblocking(False)
        backend.setblocking(False)
        on_close = self.worker.lb.adopt(header["context"], self.worker.tunnel_closed)   # counted busy here now
        loop = self.worker.loop
        tunnel = Tunnel(loop, Endpoint(loop, client), Endpoint(loop, backend), 0.0, on_close,
                        to_backend=bytes(data[:split]), to_client=bytes(data[split:]),
                        context=header["context"], state=header["state"])
        self.received += 1
        self.receiver.pauses.append(time.time() - header["sent_at"])
        self.worker.tunnel_adopted(tunnel)

    def _finish(self) -> None:
        if self.pending is not None:      # the sender died mid-record: that tunnel is lost
            for sock in self.pending[:2]:
                sock.close()
            self.pending = None
        self.worker.loop.remove(self.conn.fileno())
        self.conn.close()
        if self.received:
            pauses = sorted(self.receiver.pauses[-self.received:])
            self.worker.log_error("info", f"hand-over: adopted {self.received} tunnels; pause p50 "
                                          f"{_ms(pauses, 0.5)} p99 {_ms(pauses, 0.99)} max {_ms(pauses, 1.0)}")


def _ms(values: list[float], q: float) -> str:
    return f"{values[min(int(q * len(values)), len(values) - 1)] * 1000:.1f}ms" if values else "-"


def connect_successor(pids: list[int]) -> socket.socket | None:
    """A connection to the first successor that answers."""
    for pid in pids:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        sock.settimeout(SEND_TIMEOUT)
        try:
            sock.connect(address(pid))
            sock.setblocking(False)
            return sock
        except OSError:
            sock.close()
    return None


def send_tunnel(sock: socket.socket, tunnel: Tunnel, loop) -> tuple[Tunnel, OSError] | None:
    """Detach `tunnel` and send it to the successor (a non-blocking socket).  None: its
    sockets are the successor's now.  (tunnel, error): the successor did not take it (its
    queue is full: BlockingIOError; or it is gone), and that tunnel carries on here as
    before.  Raises OSError when a record broke off half-sent (that tunnel is lost)."""
    client, backend = tunnel.client, tunnel.backend
    to_backend, to_client = backend.out or b"", client.out or b""
    state = tunnel.detach()
    header = json.dumps({"state": state, "context": tunnel.context, "to_backend": len(to_backend),
                         "to_client": len(to_client), "sent_at": time.time()}).encode()
    data = to_backend + to_client
    try:
        socket.send_fds(sock, [b"T" + header + b"\0" + data[:CHUNK]], [client.fd, backend.fd])
    except OSError as exc:      # carry on here: the endpoints still hold their leftovers
        return Tunnel(loop, client, backend, 0.0, tunnel.on_close, context=tunnel.context, state=state), exc
    try:
        if len(data) > CHUNK:            # rare (a large leftover): finish this record at once
            sock.settimeout(SEND_TIMEOUT)
            for start in range(CHUNK, len(data), CHUNK):
                sock.sendall(b"D" + data[start:start + CHUNK])
            sock.setblocking(False)
    finally:
        client.close()
        backend.close()
    return None
