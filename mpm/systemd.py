"""systemd without libsystemd: sd_notify(3) and sd_listen_fds(3), a few lines each.

`notify("READY=1", ...)` sends one datagram to $NOTIFY_SOCKET (a path, or "@name" for the
abstract namespace); without it, nothing happens, so the master calls it unconditionally.
It never blocks: the socket is non-blocking and a message systemd cannot take now is
dropped (the next STATUS= line replaces it; READY=1 and friends are sent at most a few
times in a life).

With WATCHDOG_USEC in the environment (`WatchdogSec=` in the unit), `feed` sends WATCHDOG=1
every half of it, from the master's housekeeping pass: a master whose loop is stuck stops
feeding, and systemd kills and restarts the service (sd_watchdog_enabled(3)).

`listen_fds()` takes the sockets systemd passed (LISTEN_FDS from fd 3 on, for us only when
LISTEN_PID is our pid) and removes those variables, so neither the workers nor a master
started by `mpmctl upgrade` take them again for their own.
"""

from __future__ import annotations

import logging
import os
import socket
import time

SD_LISTEN_FDS_START = 3

log = logging.getLogger("mpm.master")


class Notifier:
    """$NOTIFY_SOCKET, opened once; `enabled` is False without it."""

    def __init__(self, environ=os.environ):
        path = environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + path[1:] if path.startswith("@") else path
        self.enabled = bool(path)
        self.sock = None
        self.last_status = ""
        self.watchdog = watchdog_interval(environ) if self.enabled else 0.0
        self.fed_at = 0.0

    def notify(self, *fields: str) -> bool:
        if not self.enabled:
            return False
        if self.sock is None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        try:
            self.sock.sendto("\n".join(fields).encode(), self.address)
            return True
        except OSError as exc:
            log.warning("sd_notify to %s failed: %s", self.address.lstrip("\0"), exc.strerror or exc)
            return False

    def status(self, text: str) -> None:
        """STATUS=, only when it changed."""
        if self.enabled and text != self.last_status:
            self.last_status = text
            self.notify("STATUS=" + text)

    def ready(self, status: str) -> None:
        self.last_status = status
        self.notify("READY=1", "STATUS=" + status)

    def reloading(self) -> None:
        """systemd (253+) waits for the READY=1 that follows; MONOTONIC_USEC says when it began."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading")

    def stopping(self, budget: float = 0.0) -> None:
        """STOPPING=1; `budget`: the seconds a graceful stop may take, asked for with
        EXTEND_TIMEOUT_USEC (systemd 236+) so that a TimeoutStopSec= shorter than
        graceful_timeout does not SIGKILL the workers mid-drain (it never shortens it)."""
        extend = (f"EXTEND_TIMEOUT_USEC={int(budget * 1e6)}",) if budget > 0 else ()
        self.notify("STOPPING=1", *extend, "STATUS=stopping")

    def main_pid(self, pid: int) -> None:
        """`mpmctl upgrade`: the new master is the service's main process from now on."""
        self.notify(f"MAINPID={pid}", f"STATUS=handed over to master pid {pid}")

    def feed(self, now: float) -> None:
        """WATCHDOG=1, when half of WATCHDOG_USEC has passed since the last one."""
        if self.watchdog and now - self.fed_at >= self.watchdog:
            self.fed_at = now
            self.notify("WATCHDOG=1")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def watchdog_interval(environ=os.environ) -> float:
    """Seconds between two WATCHDOG=1: half of WATCHDOG_USEC; 0 when systemd asks for none.
    WATCHDOG_PID, when set, names the process the watchdog is for: ours, or our parent's (a
    master `mpmctl upgrade` started inherits its predecessor's variables, and is the one that
    goes on feeding once MAINPID= names it)."""
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return 0.0
    pid = environ.get("WATCHDOG_PID", "")
    if usec <= 0 or (pid and pid not in (str(os.getpid()), str(os.getppid()))):
        return 0.0
    return usec / 2e6


def listen_fds(environ=os.environ) -> list[socket.socket]:
    """The listening sockets systemd passed us (socket activation), in order; [] without any."""
    try:
        pid = int(environ.get("LISTEN_PID", ""))
        count = int(environ.get("LISTEN_FDS", ""))
    except ValueError:
        return []
    finally:
        for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            environ.pop(name, None)
    if pid != os.getpid() or count <= 0:
        return []
    sockets = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count):
        try:
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            log.error("socket activation: fd %d is not a socket (%s): ignored", fd, exc.strerror or exc)
            continue
        sock.set_inheritable(True)          # the workers get it by fork, the next master by exec
        sockets.append(sock)
    return sockets


def address_of(sock: socket.socket) -> tuple[str, int] | None:
    """(host, port) as conf.Listener.address spells it, or None for a non-TCP socket."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
        return None
    name = sock.getsockname()
    return (name[0], name[1])
