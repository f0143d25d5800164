"""The master's listening sockets: for each listener address, one SO_REUSEPORT socket
per worker slot (DESIGN.md: the kernel then spreads accepts evenly, and a respawned
or next-generation worker of a slot inherits that slot's queue, so nothing queued is
lost across a reload or a respawn).

`prepare(config)` binds whatever a new config adds *before* anything else changes,
so a bind failure aborts a reload cleanly (an address nobody else listens on: checked first,
see `_check_free`); `commit()` then closes what the new config
no longer has (an address it dropped, or slots beyond its `workers`).

Socket activation (systemd's LISTEN_FDS): a socket passed for a listener's address is used
instead of binding.  With SO_REUSEPORT on it (`ReusePort=yes` in the .socket unit) it is
slot 0's and the other slots bind their own beside it, as usual; without, every slot
shares it (the kernel then wakes every worker per connection, but nothing is refused).
"""

from __future__ import annotations

import socket

LISTEN_BACKLOG = 511   # Apache's ListenBacklog default


class BindError(OSError):
    """A listener that cannot be bound: which one, and where the config names it."""

    def __init__(self, listener, exc: OSError):
        super().__init__(exc.errno, f"line {listener.line}: cannot bind {listener.host}:{listener.port}: "
                                    f"{exc.strerror or exc}")
        self.line = listener.line
        self.text = f"cannot bind listen {listener.host}:{listener.port}: {exc.strerror or exc}"


def _bind(listener) -> socket.socket:
    try:
        return bind_socket(listener)
    except OSError as exc:
        raise BindError(listener, exc) from exc


def bind_socket(listener) -> socket.socket:
    sock = socket.socket(listener.family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if listener.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((listener.host, listener.port))
        sock.listen(LISTEN_BACKLOG)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


def _check_free(listener) -> None:
    """Raise BindError when another program listens on the address.  SO_REUSEPORT lets any
    socket of the same user share a port, so a second mpm (or any server using it) would
    bind beside the first without a word and take part of its connections; a probe bound
    without it fails with EADDRINUSE there, as nginx's bind() does without `reuseport`."""
    probe = socket.socket(listener.family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)     # TIME_WAIT is no one's
        if listener.family == socket.AF_INET6:
            probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        probe.bind((listener.host, listener.port))
    except OSError as exc:
        raise BindError(listener, exc) from exc
    finally:
        probe.close()


class ListenerSet:
    def __init__(self, inherited: dict | None = None, activated: dict | None = None) -> None:
        self.sockets: dict[tuple, list[socket.socket]] = {}   # address -> socket per slot
        self.listeners: dict[tuple, object] = {}               # address -> conf.Listener in force
        self._pending: tuple | None = None
        self._before: tuple = ({}, {})       # what prepare found, for abandon
        # From the master we replace (`mpmctl upgrade`): address -> fds, adopted instead of bound
        # (one object per fd: a socket shared by every slot is listed once per slot).
        by_fd: dict[int, socket.socket] = {}
        self._inherited = {}
        for address, fds in (inherited or {}).items():
            for fd in fds:
                if fd not in by_fd:
                    by_fd[fd] = socket.socket(fileno=fd)
            self._inherited[address] = [by_fd[fd] for fd in fds]
        self._activated = activated if activated is not None else {}   # address -> socket systemd passed (shared
        # with the admin listener: what neither takes is left in it)

    def export(self) -> dict:
        """address -> fds, for the next master (`mpmctl upgrade`)."""
        return {f"{host}|{port}": [sock.fileno() for sock in socks]
                for (host, port), socks in self.sockets.items()}

    def prepare(self, config) -> None:
        """Bind every socket `config` needs that we do not hold yet; raise OSError on failure."""
        workers = config.mpm.workers
        added: list[tuple] = []    # (address, socket) bound or adopted by this call, undone on failure
        surplus: list[socket.socket] = []    # adopted beyond our slots: closed at commit
        self._before = ({address: list(socks) for address, socks in self._inherited.items()}, dict(self._activated))
        self._pending = (config, added, surplus)
        try:
            for listener in config.listeners:
                have = self.sockets.get(listener.address, [])
                adopt = self._inherited.pop(listener.address, [])
                passed = self._activated.pop(listener.address, None)
                if passed is not None and not have and not adopt:
                    reuseport = passed.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
                    adopt = [passed] if reuseport else [passed] * workers
                if not have and not adopt and not self._holds_port(listener.port, added):
                    _check_free(listener)
                for _ in range(len(have), workers):
                    added.append((listener.address, adopt.pop(0) if adopt else _bind(listener)))
                surplus += adopt      # the old master had more slots: their queues are drained by it
        except OSError:
            self.abandon()
            raise

    def abandon(self) -> None:
        """The reload failed: close what `prepare` bound, and keep what it adopted (sockets an
        old master or systemd passed) for the next attempt."""
        if self._pending is None:
            return
        _, added, _ = self._pending
        self._pending = None
        self._inherited, self._activated = self._before
        kept = {id(sock) for socks in self._inherited.values() for sock in socks}
        kept |= {id(sock) for sock in self._activated.values()}
        for _, sock in added:
            if id(sock) not in kept:
                sock.close()

    def _holds_port(self, port: int, added: list[tuple]) -> bool:
        """A socket of ours on `port` (any host): a probe there would find it, not a stranger."""
        return any(address[1] == port for address in self.sockets) or any(address[1] == port for address, _ in added)

    def commit(self) -> list[socket.socket]:
        """Adopt the prepared config; return the sockets no slot listens on any more, for the
        master to close before it forks the new generation (a copy a new worker inherited
        would take connections nobody accepts).  The old workers' copies serve until they stop."""
        config, added, surplus = self._pending
        self._pending = None
        for sock in surplus:
            sock.close()
        for address, sock in added:
            self.sockets.setdefault(address, []).append(sock)
        workers = config.mpm.workers
        wanted = {listener.address: listener for listener in config.listeners}
        retired: list[socket.socket] = []
        for address in list(self.sockets):
            if address not in wanted:
                retired += self.sockets.pop(address)
            else:
                retired += self.sockets[address][workers:]
                del self.sockets[address][workers:]
        self.listeners = wanted
        kept = {id(sock) for sock in self.all_sockets()}      # a shared socket may serve a slot still
        return list({id(sock): sock for sock in retired if id(sock) not in kept}.values())

    def for_slot(self, slot: int) -> list[tuple]:
        return [(socks[slot], self.listeners[address]) for address, socks in self.sockets.items()]

    def all_sockets(self) -> list[socket.socket]:
        return [sock for socks in self.sockets.values() for sock in socks]

    def close_all(self) -> None:
        for sock in self.all_sockets():
            sock.close()
        self.sockets.clear()
