"""Watching the workers: reaping them, respawning the dead (with a back-off for crash
loops), replacing one that recycles itself, the watchdog for stuck ones, SIGKILL for those
past their deadline, and the MaxRequestWorkers warning.

Functions of the master's state (`mpm.master.Master`), called from its housekeeping tick
and on SIGCHLD.
"""

from __future__ import annotations

import logging
import os
import signal
import time

from shm.metrics import RESTART_CAUSES

log = logging.getLogger("mpm.master")

CRASH_WINDOW = 5.0            # a worker dying sooner than this after its start counts as a crash
KILL_GRACE = 5.0              # seconds past graceful_timeout before stragglers get SIGKILL
MRW_WARNING_INTERVAL = 60.0   # Apache logs "reached MaxRequestWorkers" at most this often
STACK_DUMP_SIGNAL = signal.SIGUSR2   # a worker's faulthandler writes its stacks to the error log
STACK_DUMP_GRACE = 0.1        # seconds between that signal and SIGKILL (the dump runs in a C handler)


class WorkerRecord:
    """What the master knows of one worker it forked (`Master.workers`, by pid)."""

    __slots__ = ("pid", "generation", "slot", "row", "started", "retired", "kill_at", "hung", "graceful")

    def __init__(self, pid, generation, slot, row, graceful: float):
        self.pid = pid
        self.generation = generation
        self.slot = slot
        self.row = row
        self.graceful = graceful  # the graceful_timeout it was forked with: the one it stops by
        self.started = time.monotonic()
        self.retired = False      # told to stop (reload, recycle, stop): never respawned
        self.kill_at = None       # when it gets SIGKILL if still alive
        self.hung = False         # the watchdog found it stuck (its replacement is started)


def reap(master) -> None:
    """SIGCHLD: a worker gone has its counts folded and its rows freed, and is respawned if it
    should run; the upgrade's new master (our child too) keeps its status for upgrade.watch."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        successor = master.successor or master.handed_to     # (upgrade.watch, upgrade.fall_back)
        if successor is not None and pid == successor.pid:
            # reaped here, Popen.poll() would get ECHILD and report 0: its status is kept
            successor.returncode = os.waitstatus_to_exitcode(status)
            continue
        record = master.workers.pop(pid, None)
        if record is None:
            continue
        master.metrics.fold(record.row)
        master.scoreboard.free(record.row)
        if record.retired or master.stopping or record.generation != master.generation:
            continue
        if master.slots.get(record.slot) == pid:
            del master.slots[record.slot]
        schedule_respawn(master, record, status)


FORK_RETRY = 1.0      # seconds before a slot whose fork failed is tried again (Apache: 10)


def spawn_failed(master, slot: int, why: str) -> bool:
    """A worker that could not be started: said, and tried again in FORK_RETRY seconds (the
    slot's worker of an older generation, if any, serves on meanwhile).  False, for spawn."""
    log.error("cannot start the worker of slot %d (generation %d): %s; trying again in %gs",
              slot, master.generation, why, FORK_RETRY)
    master.respawn_at[slot] = time.monotonic() + FORK_RETRY
    return False


def respawn_due(master, now: float) -> None:
    for slot, when in list(master.respawn_at.items()):
        if when <= now and slot not in master.slots:
            del master.respawn_at[slot]
            master.spawn(slot)


def kill_overdue(master, now: float) -> None:
    """SIGKILL for the workers past their kill_at (graceful_timeout, a stop --now, the watchdog)."""
    for record in master.workers.values():
        if record.kill_at is not None and now >= record.kill_at:
            if not record.hung:
                log.warning("worker pid %d outlived graceful_timeout: SIGKILL", record.pid)
            record.kill_at = None
            try:
                os.kill(record.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def schedule_respawn(master, record, status: int) -> None:
    lived = time.monotonic() - record.started
    how = (f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
           else f"exit code {os.waitstatus_to_exitcode(status)}")
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        # A clean exit is a worker that recycled itself (MaxConnectionsPerChild) before
        # a tick saw it stopping: replaced at once, and no crash, however soon.
        master.crashes[record.slot] = 0
        master.respawn_at[record.slot] = time.monotonic()
        master.metrics.count("restarts", RESTART_CAUSES.index("recycle"))
        return
    crashes = master.crashes.get(record.slot, 0) + 1 if lived < CRASH_WINDOW else 1
    master.metrics.count("restarts", RESTART_CAUSES.index("signal" if os.WIFSIGNALED(status) else "exit"))
    master.crashes[record.slot] = crashes
    delay = 0.0 if crashes == 1 else min(0.5 * 2 ** (crashes - 2), 30.0)
    if crashes > 1:
        log.error("worker slot %d is crash-looping (%d deaths in a row, last by %s): next start in %.1fs",
                  record.slot, crashes, how, delay)
    else:
        log.warning("worker pid %d (slot %d) died by %s: respawning", record.pid, record.slot, how)
    master.respawn_at[record.slot] = time.monotonic() + delay

def recycle_stopping_workers(master) -> None:
    """A current worker that stopped on its own (MaxConnectionsPerChild) gets its
    replacement now, not when its last tunnel ends."""
    for slot, pid in list(master.slots.items()):
        record = master.workers[pid]
        if master.scoreboard.read(record.row)["state"] == "stopping" and not record.retired:
            record.retired = True
            record.kill_at = time.monotonic() + record.graceful + KILL_GRACE
            del master.slots[slot]
            master.metrics.count("restarts", RESTART_CAUSES.index("recycle"))
            master.spawn(slot)

def watchdog(master) -> None:
    """A worker whose heartbeat (its scoreboard row, written every 0.5 s by its loop) is
    older than mpm.watchdog is stuck: its Python stacks go to the error log (SIGUSR2,
    faulthandler), it is killed, and a current one is replaced at once (gunicorn's
    worker timeout).  A busy worker still turns its loop, so it is never taken for stuck."""
    limit = master.config.mpm.watchdog
    if not limit:
        return
    wall, now = time.time(), time.monotonic()
    for record in list(master.workers.values()):
        if record.hung or now - record.started < limit:
            continue
        silent = wall - master.scoreboard.read(record.row)["updated"]
        if silent <= limit:
            continue
        log.error("watchdog: worker pid %d (slot %d, generation %d) has sent no heartbeat for %.1fs: "
                  "its stacks go to the error log, then it is killed%s", record.pid, record.slot,
                  record.generation, silent, " and replaced" if not record.retired else "")
        record.hung = True
        record.kill_at = now + STACK_DUMP_GRACE
        try:
            os.kill(record.pid, STACK_DUMP_SIGNAL)
        except ProcessLookupError:
            continue
        if not record.retired and master.slots.get(record.slot) == record.pid:
            record.retired = True
            del master.slots[record.slot]
            master.metrics.count("restarts", RESTART_CAUSES.index("watchdog"))
            master.spawn(record.slot)

def check_max_request_workers(master) -> None:
    mpm = master.config.mpm
    busy = sum(master.scoreboard.read(record.row)["connections"] for record in master.workers.values())
    now = time.monotonic()
    if busy >= mpm.max_request_workers and now - master.last_mrw_warning >= MRW_WARNING_INTERVAL:
        master.last_mrw_warning = now
        log.error("server reached MaxRequestWorkers setting (%d connections), consider raising "
                  "mpm.max_request_workers", mpm.max_request_workers)
