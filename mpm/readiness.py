"""Is the server serving?  What /healthz answers, and what systemd is told (Type=notify).

A generation serves once every one of its workers has reported "ready" (or "full": at
capacity, still serving) in the scoreboard.  The master calls `tick` every housekeeping
pass; the first time the current generation serves, systemd hears READY=1 (after start,
and after each reload, which said RELOADING=1 first), and WATCHDOG=1 as often as
WatchdogSec= asks.  STATUS= follows the generation,
the workers and the connections, sent when it changes and at most every STATUS_INTERVAL.

/healthz (`health`): 503 before the first generation served, while stopping, and when no
worker of the current generation serves (a worker whose heartbeat stopped does not: `serves`);
200 otherwise.  Right after a reload the new
generation is starting and the old one has stopped accepting: the listening sockets keep
every connection queued for the new workers, so for RELOAD_GRACE seconds that still
counts as serving (a load balancer must not pull the instance out on every reload); a
new generation that has not come up by then is reported.
"""

from __future__ import annotations

import os
import time

from mpm import masterlog
from mpm.supervision import KILL_GRACE

STATUS_INTERVAL = 1.0
RELOAD_GRACE = 5.0
SERVING_STATES = ("ready", "full")
# A worker writes its row every 0.5 s (worker.process.PUBLISH_INTERVAL) from its loop: one
# that has not for this long is stuck (a loop that never returns, a blocking call) and serves
# nobody, whatever state its row still says.  (mpm.watchdog replaces it later.)
STALE_HEARTBEAT = 3.0


def serves(row: dict, now: float) -> bool:
    """Whether a scoreboard row is a worker serving: a serving state and a fresh heartbeat
    (`now`: wall-clock time, as the row's `updated`)."""
    return row["state"] in SERVING_STATES and now - row["updated"] < STALE_HEARTBEAT


class Readiness:
    def __init__(self, notifier, upgrade_fd: int | None = None):
        self.notifier = notifier
        self.upgrade_fd = upgrade_fd    # `mpmctl upgrade`: a byte there tells the old master we serve
        self.served = 0                 # the latest generation all of whose workers were up
        self.reloaded_at = 0.0          # monotonic time of the last reload that started a generation
        self.status_at = 0.0
        self.stop_budget = 0.0          # seconds a graceful stop may take (EXTEND_TIMEOUT_USEC)

    # == what the master tells us ===================================================================
    def reloading(self, master) -> None:
        self.tick(master)                    # a generation that came up since the last pass is noted first
        self.notifier.reloading()

    def reload_done(self, ok: bool) -> None:
        """A reload that started a generation waits for it (`tick`); a refused one is over now."""
        if ok:
            self.reloaded_at = time.monotonic()
        else:
            self.notifier.ready("reload refused: the previous configuration serves on")

    def tick(self, master) -> int:
        """Note a generation that came up (READY=1) and keep STATUS= current; returns how many
        workers of the current generation serve.  (Also where the master's own log lines that a
        stuck stderr did not take are tried again: this runs every housekeeping pass.)"""
        masterlog.flush()
        if master.stopping:
            return 0            # (systemd stops its watchdog once the service stops: no more feeding)
        self.notifier.feed(time.monotonic())
        # graceful_timeout for the workers, KILL_GRACE before SIGKILL, and a margin for our exit
        self.stop_budget = master.config.mpm.graceful_timeout + KILL_GRACE + 5.0
        serving, connections, tunnels = self._count(master)
        status = (f"generation {master.generation}: {serving}/{master.config.mpm.workers} workers serving, "
                  f"{connections} connections, {tunnels} tunnels")
        if self.served != master.generation and serving >= master.config.mpm.workers:
            self.served = master.generation
            self.status_at = time.monotonic()
            self.notifier.ready(status)
            self._tell_old_master()
        elif self.notifier.enabled and time.monotonic() - self.status_at >= STATUS_INTERVAL:
            self.status_at = time.monotonic()
            self.notifier.status(status)
        return serving

    def stopping(self) -> None:
        self.notifier.stopping(self.stop_budget)

    def _tell_old_master(self) -> None:
        """Our first generation serves: the master `mpmctl upgrade` replaces hands over (it
        cannot tell from the scoreboard: our config may run fewer workers than its)."""
        if self.upgrade_fd is not None:
            try:
                os.write(self.upgrade_fd, b"R")
            except OSError:
                pass                        # it is gone (upgrade.follow takes the control paths)
            self._close_upgrade_fd()

    def _close_upgrade_fd(self) -> None:
        if self.upgrade_fd is not None:
            os.close(self.upgrade_fd)
            self.upgrade_fd = None

    def close_in_child(self) -> None:
        """In a forked worker: the master's descriptors go."""
        self.notifier.close()
        self._close_upgrade_fd()

    # == what /healthz answers ========================================================================
    def health(self, master) -> tuple[int, str]:
        if master.stopping == "upgrade":    # a probe we accepted before the hand-over of the socket
            return 200, "ok: upgraded; the new master serves"
        if master.stopping:
            return 503, "stopping"
        serving = self.tick(master)          # up to date, not as of the last housekeeping pass
        if not self.served:
            # An upgrade's new master shares the admin socket with the one it replaces from its
            # start: while that one's workers serve, so does the instance (a probe must not flap).
            if master.predecessor_generation is not None and self._predecessor_serves(master):
                return 200, f"ok: upgrading; generation {master.predecessor_generation} serves meanwhile"
            return 503, "starting"
        if serving:
            return 200, f"ok: generation {master.generation}, {serving} workers serving"
        if time.monotonic() - self.reloaded_at < RELOAD_GRACE:      # and an earlier generation served
            return 200, f"ok: reloading into generation {master.generation}"
        return 503, f"no worker of generation {master.generation} serves"

    @staticmethod
    def _predecessor_serves(master) -> bool:
        now = time.time()
        return any(row["generation"] == master.predecessor_generation and serves(row, now)
                   for row in master.scoreboard.live_rows())

    @staticmethod
    def _count(master) -> tuple[int, int, int]:
        """Workers of the current generation serving; connections and tunnels of all."""
        serving = connections = tunnels = 0
        board = master.scoreboard
        now = time.time()
        for record in master.workers.values():
            row = board.read(record.row)
            connections += row["connections"]
            tunnels += row["tunnels"]
            if record.generation == master.generation and not record.retired and serves(row, now):
                serving += 1
        return serving, connections, tunnels
