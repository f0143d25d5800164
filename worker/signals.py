"""A worker's signals, its watch on the master, and its stack dump for the watchdog.

Signal handlers only note the signal and wake the loop (`signal.set_wakeup_fd`); the
loop then calls the worker (gunicorn's arbiter pattern, here in the worker):
    SIGTERM            graceful stop: stop accepting, finish exchanges, hand tunnels over
    SIGQUIT, SIGINT    immediate stop
    SIGUSR2            (the master's watchdog) write every thread's Python stack to the
                       error log, from the C level: it works even when the loop is stuck
    SIGHUP             (the master's `mpmctl reopen`) open the log files afresh
SIGUSR1 and SIGWINCH are the master's business and ignored here.

The master holds the only write end of a pipe whose read end we watch: EOF on it means
the master is gone, and a worker must not outlive it.
"""

from __future__ import annotations

import faulthandler
import os
import signal

from worker.loop import EPOLLIN

STACK_DUMP_SIGNAL = signal.SIGUSR2


class WorkerSignals:
    def __init__(self, loop, parent_fd: int, on_graceful, on_immediate, on_parent_gone, dump_fd: int | None,
                 on_reopen=None):
        self.loop = loop
        self.on_graceful = on_graceful
        self.on_immediate = on_immediate
        self.on_reopen = on_reopen
        self.on_parent_gone = on_parent_gone
        self.pending: list[int] = []
        self.wakeup_r, wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wakeup_w)
        for signum in (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, lambda signum, frame: self.pending.append(signum))
        for signum in (signal.SIGUSR1, signal.SIGWINCH):
            signal.signal(signum, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        self.dump_to(dump_fd)
        loop.add(self.wakeup_r, EPOLLIN, self._on_wakeup)
        loop.add(parent_fd, EPOLLIN, lambda mask: on_parent_gone())

    def _on_wakeup(self, mask: int) -> None:
        try:
            while os.read(self.wakeup_r, 512):
                pass
        except BlockingIOError:
            pass
        while self.pending:
            signum = self.pending.pop(0)
            if signum == signal.SIGTERM:
                self.on_graceful()
            elif signum == signal.SIGHUP:
                if self.on_reopen is not None:
                    self.on_reopen()
            else:
                self.on_immediate()

    @staticmethod
    def dump_to(fd: int | None) -> None:
        """Where the watchdog's stack dump goes (the error log's descriptor): again after the
        log is reopened, or faulthandler would write to a closed number, which a client's
        socket may have by then."""
        if fd is not None:
            faulthandler.register(STACK_DUMP_SIGNAL, file=fd, all_threads=True)
