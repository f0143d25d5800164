"""Where the CPU went during a cell, and how much of the machine was busy with something else.

A process tree's CPU is the sum, over its live processes, of user + system time plus the
time of the children each has already reaped (psutil's ``children_user/children_system``).
That sum stays right across a reload: when an old worker exits, its time moves into its
master's ``children_*`` instead of vanishing.

The machine's busy time comes from /proc/stat (user, nice, system and steal: a hypervisor
taking our CPU is load from outside too). Whatever of it is not the harness and its
descendants (load generators, backend, proxies, wrk) is load from outside the run; a cell
where it exceeds a threshold is marked disturbed. Interrupt and softirq time is left out of
that sum and reported apart: with IRQ time accounting the kernel charges loopback packet
processing - our own traffic, 0.2 cores in a 64-connection echo here - to no process.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import psutil

BUSY_FIELDS = ("user", "nice", "system", "steal")
IRQ_FIELDS = ("irq", "softirq")


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def tree_cpu(pid: int) -> float:
    """CPU seconds used so far by ``pid`` and its descendants, the reaped ones included."""
    return sum(tree_cpu_split(pid))


def tree_cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``pid`` and its descendants, the reaped ones included."""
    user = system = 0.0
    for proc in tree(pid):
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue
        user += t.user + t.children_user
        system += t.system + t.children_system
    return user, system


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and its descendants (shared pages count once per process, as ps shows)."""
    total = 0
    for proc in tree(pid):
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total


def tree_pids(pid: int) -> list[int]:
    return [p.pid for p in tree(pid)]


def machine_busy() -> tuple[float, float]:
    """(task, interrupt) busy CPU seconds of the CPUs this process may run on (all, on a plain host)."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    per_cpu = psutil.cpu_times(percpu=True)
    if allowed is not None and len(allowed) < len(per_cpu):
        per_cpu = [t for i, t in enumerate(per_cpu) if i in allowed]
    return (sum(getattr(t, f, 0.0) for t in per_cpu for f in BUSY_FIELDS),
            sum(getattr(t, f, 0.0) for t in per_cpu for f in IRQ_FIELDS))


@dataclass
class Snapshot:
    wall: float
    busy: float
    irq: float
    ours: float
    peer: float
    peer_user: float
    backend: float


class Meter:
    """Snapshots of the machine, the whole run, one peer and the backend around a measured window."""

    def __init__(self, peer_pids: list[int], backend_pid: int | None) -> None:
        self.peer_pids = peer_pids
        self.backend_pid = backend_pid

    def snapshot(self) -> Snapshot:
        busy, irq = machine_busy()
        split = [tree_cpu_split(p) for p in self.peer_pids]
        return Snapshot(
            wall=time.monotonic(),
            busy=busy,
            irq=irq,
            ours=tree_cpu(os.getpid()),
            peer=sum(u + s for u, s in split),
            peer_user=sum(u for u, _ in split),
            backend=tree_cpu(self.backend_pid) if self.backend_pid else 0.0,
        )

    @staticmethod
    def window(before: Snapshot, after: Snapshot) -> dict:
        wall = max(after.wall - before.wall, 1e-9)
        outside = max(0.0, (after.busy - before.busy) - (after.ours - before.ours))
        return {
            "wall_s": wall,
            "proxy_cpu_s": max(0.0, after.peer - before.peer),
            "proxy_user_s": max(0.0, after.peer_user - before.peer_user),
            "backend_cpu_s": max(0.0, after.backend - before.backend),
            "run_cpu_s": max(0.0, after.ours - before.ours),
            "outside_load_cores": outside / wall,
            "irq_cores": max(0.0, after.irq - before.irq) / wall,
        }

    def outside_now(self, seconds: float = 0.3) -> float:
        """Cores busy outside the run over a short idle sample (nothing of ours is loaded)."""
        before = self.snapshot()
        time.sleep(seconds)
        return self.window(before, self.snapshot())["outside_load_cores"]


def loadavg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0
