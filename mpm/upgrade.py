"""`mpmctl upgrade`: the next master, started from the installed code, takes over without a
connection lost.

It inherits our listening sockets, the shared tables (scoreboard, metrics, session-ticket
keys) and the admin socket through `MPM_INHERIT` and passed fds; once its workers serve,
ours stop and hand it their tunnels and keep-alive connections, and we exit.  Until then
nothing changes, and a failure changes nothing.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

log = logging.getLogger("mpm.master")


def start(master) -> dict:
    """Start the next master (a fresh exec of the installed code) with our listening
    sockets and our scoreboard; once its workers serve, ours stop and hand it their
    tunnels, and we exit.  Until then nothing changes, and a failure changes nothing."""
    if master.stopping or master.successor is not None:
        return {"ok": False, "errors": ["an upgrade or a stop is already under way"]}
    admin = master.admin.export()
    ticket_keys = master.ticket_keys.export()     # a memfd: the keys never go through a file
    env = dict(os.environ, MPM_UPGRADE_FROM=str(os.getpid()), MPM_INHERIT=json.dumps({
        "listeners": master.listeners.export(), "scoreboard": master.scoreboard.fd,
        "generation": master.generation, "discovered": master.balancers.export(),
        "metrics": master.metrics.fd, "admin": admin, "member_counts": master.balancers.export_counts(),
        "ticket_keys": ticket_keys}))
    fds = [sock.fileno() for sock in master.listeners.all_sockets()] + [master.scoreboard.fd, master.metrics.fd]
    fds += [admin["fd"]] if admin else []
    fds += [ticket_keys] if ticket_keys is not None else []
    argv = [sys.executable, "-m", "mpm", "start"] + (["-c", master.config_path] if master.config_path else [])
    master.successor = subprocess.Popen(argv, env=env, pass_fds=fds)
    master.successor_deadline = time.monotonic() + 30
    log.info("upgrade: started master pid %d; waiting for its workers", master.successor.pid)
    return {"ok": True, "new_master": master.successor.pid}

def watch(master, now: float) -> None:
    successor = master.successor
    if successor.poll() is not None:
        if master.successor_deadline:
            log.error("upgrade failed: the new master %s; still serving", _ended(successor.returncode))
        master.successor = None
        master.orphans = True           # its workers' rows, freed once they are gone (forget_orphans)
        _reclaim_control(master)
        return
    if not master.successor_deadline:       # told to stop (below): wait for it, kill it if it lingers
        if now > master.successor_kill_at:
            successor.kill()
        return
    ready = [row for row in master.scoreboard.live_rows()
             if row["generation"] > master.generation and row["state"] == "ready"]
    if len(ready) >= master.config.mpm.workers:
        log.info("upgrade: master pid %d serves; our workers hand their tunnels over", successor.pid)
        master.readiness.notifier.main_pid(successor.pid)   # systemd follows it, and kills nothing
        master.admin.hand_over()            # the new master answers there (it holds the same socket)
        master.successor = None
        master.stopping = "upgrade"
        master.respawn_at.clear()
        for record in master.workers.values():
            master.retire(record)
        master.listeners.close_all()        # the new master holds the same sockets
        master.control.close(unlink=False)  # the path is the new master's now
    elif now > master.successor_deadline:
        log.error("upgrade failed: master pid %d did not become ready in time; still serving",
                  successor.pid)
        successor.terminate()
        master.successor_deadline = 0.0     # the control plane is ours again once it has exited
        master.successor_kill_at = now + 10.0


def _ended(returncode: int) -> str:
    """How a child ended, from subprocess's returncode (-N: killed by signal N)."""
    if returncode < 0:
        try:
            return f"was killed by signal {-returncode} ({signal.Signals(-returncode).name})"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def _reclaim_control(master) -> None:
    """The successor took the pidfile and the control socket when it started, and removed
    them when it exited: we serve on, so they are ours again (else `mpmctl` would say "not
    running" to a master that serves; nginx renames its .oldbin pidfile back the same way)."""
    from mpm.control import ControlServer
    from mpm.pidfile import write_pidfile
    control = master.config.control
    write_pidfile(control.pidfile)
    master.control.close(unlink=False)
    master.control = ControlServer(control.socket, master.selector, master._control_request)
    log.warning("upgrade: pidfile %s and control socket %s are this master's again", control.pidfile, control.socket)


def forget_orphans(master) -> bool:
    """After a successor died: the rows of its workers (a newer generation than ours) go once
    those workers have exited, their counts folded into the past, so /metrics and the
    hand-over stop seeing a generation that will never serve.  Nobody else reaps them (their
    parent is gone).  True while some of them still run."""
    from mpm.pidfile import pid_alive
    left = False
    for index, row in master.scoreboard.live_rows_indexed():
        if row["generation"] <= master.generation:
            continue
        if row["pid"] and pid_alive(row["pid"]):
            left = True
            continue
        master.metrics.fold(index)
        master.scoreboard.free(index)
    return left
