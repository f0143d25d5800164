"""`mpmctl upgrade`: the next master, started from the installed code, takes over without a
connection lost.

It inherits our listening sockets, the shared tables (scoreboard, metrics, session-ticket
keys, the balancers' member table) and the admin socket through `MPM_INHERIT` and passed fds; once its workers serve,
ours stop and hand it their tunnels and keep-alive connections, and we exit.  Until then
nothing changes, and a failure changes nothing.

The control plane too (nginx's pid.oldbin model): until the hand-over, `mpmctl` (stop,
reload, status) reaches us.  The new master binds its control socket on a staging path
(`staging_path`) and writes no pidfile; at the hand-over we rename() its socket over ours, so a
client connects to one master or the other, never to nothing, and write its pid into the
pidfile.  Our control paths are its (as a reload keeps them too).  A stop asked of us meanwhile
abandons the upgrade: the new master is told to stop, and we exit after it.  Should we vanish
without handing over (killed, or a release before this one), the new master takes the paths
itself once we are gone.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

from mpm import masterlog, settling

log = logging.getLogger("mpm.master")
STAGING = ".new"            # the new master's control socket until the hand-over: SOCKET + STAGING


def staging_path(socket_path: str) -> str:
    """Where the new master binds its control socket until the hand-over: SOCKET.new, or a
    one-letter sibling when that would be too long for a Unix socket (the real path fits)."""
    from conf.loader import SUN_PATH_MAX
    staged = socket_path + STAGING
    return staged if len(os.fsencode(staged)) < SUN_PATH_MAX else os.path.join(os.path.dirname(socket_path), "~")


class CannotTakeOver(Exception):
    """This master cannot replace the one `mpmctl upgrade` started it from."""


def check_takeover(upgrade_from: int | None, inherit: dict, scoreboard) -> None:
    """Before any listener or worker: a master of a release that judges its successor ready
    only by the successor's rows in the scoreboard (no `ready_fd`: before 7ecc7c7) can never
    see ours when we could not read its table.  Carrying on, our workers took connections for
    30 s until that master gave up on us and stopped us, cutting them (review 2026-12-04-versions
    r06); nginx's new binary that cannot start takes nothing either."""
    if upgrade_from is not None and inherit.get("scoreboard") is not None and not scoreboard.inherited \
            and inherit.get("ready_fd") is None:
        raise CannotTakeOver(f"cannot take over from master {upgrade_from}: a release whose scoreboard this "
                             "one cannot read, and that could not tell that we serve; stop it and start this "
                             "release, or upgrade through an intermediate release")


def start(master, named=None) -> dict:
    """Start the next master (a fresh exec of the installed code) with our listening
    sockets and our scoreboard; once its workers serve, ours stop and hand it their
    tunnels, and we exit.  Until then nothing changes, and a failure changes nothing.
    `named`: the file `mpmctl upgrade -c` checked (the new master reads ours)."""
    if master.stopping or master.successor is not None:
        return {"ok": False, "errors": ["an upgrade or a stop is already under way"]}
    from mpm.reloading import other_file
    errors = other_file(master, named)
    if errors:
        return {"ok": False, "errors": errors}
    admin = master.admin.export()
    ticket_keys = master.ticket_keys.export()     # a memfd: the keys never go through a file
    members = master.balancers.export_table()     # our workers count on there until they exit
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)    # it writes a byte once it serves
    env = dict(os.environ, MPM_UPGRADE_FROM=str(os.getpid()), MPM_INHERIT=json.dumps({
        "listeners": master.listeners.export(), "scoreboard": master.scoreboard.fd,
        "generation": master.generation, "discovered": master.balancers.export(),
        "metrics": master.metrics.fd, "admin": admin, "member_counts": members["all"],
        "member_table": members, "ticket_keys": ticket_keys, "ready_fd": ready_w,
        "control": {"pidfile": master.config.control.pidfile, "socket": master.config.control.socket}}))
    fds = [sock.fileno() for sock in master.listeners.all_sockets()] + [master.scoreboard.fd, master.metrics.fd,
                                                                         members["fd"]]
    fds += [admin["fd"]] if admin else []
    fds += [ticket_keys] if ticket_keys is not None else []
    argv = [sys.executable, "-m", "mpm", "start"] + (["-c", master.config_path] if master.config_path else [])
    try:
        master.successor = subprocess.Popen(argv, env=env, pass_fds=[*fds, ready_w])
    except OSError as exc:      # the interpreter gone (a virtualenv rebuilt), out of fds or memory
        os.close(ready_r)
        why = f"cannot start the new master ({argv[0]}): {exc.strerror or exc}"
        log.error("upgrade failed: %s; still serving", why)
        return {"ok": False, "errors": [why]}
    finally:
        os.close(ready_w)
    master.successor_ready = ready_r
    master.successor_deadline = time.monotonic() + 30
    log.info("upgrade: started master pid %d; waiting for its workers", master.successor.pid)
    return {"ok": True, "new_master": master.successor.pid}


def watch(master, now: float) -> None:
    successor = master.successor
    if successor.poll() is not None:
        if master.successor_deadline:
            log.error("upgrade failed: the new master %s; still serving", _ended(successor.returncode))
        master.successor = None
        _close_ready(master)
        master.orphans = master.generation      # its workers' rows, freed once they are gone (forget_orphans)
        _reclaim_control(master)
        return
    if not master.successor_deadline:       # told to stop (below): wait for it, kill it if it lingers
        if now > master.successor_kill_at:
            successor.kill()
        return
    if _serves(master):
        _close_ready(master)
        log.info("upgrade: master pid %d serves; our workers hand their tunnels over", successor.pid)
        master.readiness.notifier.main_pid(successor.pid)   # systemd follows it, and kills nothing
        master.admin.hand_over()            # the new master answers there (it holds the same socket)
        master.handed_to, master.successor = successor, None    # its death, while we drain, is `fall_back`'s
        master.stopping = "upgrade"
        master.respawn_at.clear()
        for record in master.workers.values():
            master.retire(record)
        master.listeners.close_all()        # the new master holds the same sockets
        _hand_control_over(master, successor.pid)
    elif now > master.successor_deadline:
        log.error("upgrade failed: master pid %d did not become ready in time; still serving",
                  successor.pid)
        successor.terminate()
        master.successor_deadline = 0.0     # forgotten once it has exited (the control plane stayed ours)
        master.successor_kill_at = now + 10.0


FALL_BACK_WAIT = 10.0       # seconds `fall_back` tries to bind what the dead new master held


def falling_back(master) -> bool:
    """The new master we handed over to has ended: `fall_back` decides (and until it has,
    the master does not exit when its last draining worker does: review 2026-12-04 #3)."""
    return master.handed_to is not None and master.handed_to.returncode is not None


def fall_back(master, now: float) -> None:
    """The new master died after the hand-over while we still drain (new code failing under
    its first traffic): nobody else would serve.  We take the service back, as nginx's old
    master can be told to (review 2026-12-03-upgrade #2): the listening sockets bound again
    (its workers hold the ports until they have seen it gone: tried each pass), the admin
    listener, the control paths, systemd's MAINPID, and a generation of our own workers from
    our configuration.  Our draining workers finish as they would.  Once we have exited there
    is nothing left to fall back to.  A new master that exited 0 was stopped (`mpmctl stop`
    reaches it, not us, after the hand-over), or upgraded in turn: nothing to take back."""
    if master.handed_to.returncode == 0:
        master.handed_to = None
        return
    if master.fall_back_until is None:
        master.fall_back_until = now + FALL_BACK_WAIT
        log.error("upgrade: the new master pid %d %s after it took over; taking the service back",
                  master.handed_to.pid, _ended(master.handed_to.returncode))
    master.admin.close()            # (what is left of it: its socket went to the new master)
    try:
        master.listeners.prepare(master.config)
        master.admin.prepare(master.config.admin)
    except OSError as exc:
        master.listeners.abandon()
        if now < master.fall_back_until:
            return
        log.error("upgrade: cannot take the service back (%s); nothing serves", exc)
        master.handed_to = None
        return
    master.handed_to = master.fall_back_until = None
    master.stopping = None
    for sock in master.listeners.commit():
        sock.close()
    master.admin.commit(master.config.admin)
    _reclaim_control(master)
    master.readiness.notifier.main_pid(os.getpid())
    master.ticket_keys.configure(master.config.tls)     # the dead master installed its configuration's
    master.orphans = master.generation  # the dead master's workers' rows, freed as they exit
    master.new_generation()             # (numbered past theirs: it counted on from ours, reloads too)
    log.warning("upgrade: this master serves again, generation %d", master.generation)


def _serves(master) -> bool:
    """The new master says its workers serve (a byte on the pipe, whatever its worker count);
    one of a release before this one, when as many of its workers as ours are ready."""
    try:
        if os.read(master.successor_ready, 1):
            return True
    except BlockingIOError:
        pass
    ready = [row for row in master.scoreboard.live_rows()
             if row["generation"] > master.generation and row["state"] == "ready"]
    return len(ready) >= master.config.mpm.workers


def _close_ready(master) -> None:
    if master.successor_ready is not None:
        os.close(master.successor_ready)
        master.successor_ready = None


def _ended(returncode: int) -> str:
    """How a child ended, from subprocess's returncode (-N: killed by signal N)."""
    if returncode < 0:
        try:
            return f"was killed by signal {-returncode} ({signal.Signals(-returncode).name})"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def abandon(master, now: bool) -> None:
    """A stop asked of us while the new master starts: it must not take over a service
    being stopped.  It is told to stop too, and killed if it lingers; we exit after it."""
    successor = master.successor
    log.warning("upgrade abandoned: the new master pid %d is told to stop", successor.pid)
    successor.send_signal(signal.SIGINT if now else signal.SIGTERM)
    master.successor_deadline = 0.0
    master.successor_kill_at = time.monotonic() + (2.0 if now else master.config.mpm.graceful_timeout + 5.0)


def _hand_control_over(master, successor_pid: int) -> None:
    """The new master's control socket replaces ours (rename: atomic), then the pidfile names
    it; what was queued on ours is dropped, and `mpmctl` falls back to the pidfile's pid."""
    from mpm.pidfile import write_pidfile
    control = master.config.control
    try:
        os.rename(staging_path(control.socket), control.socket)
    except FileNotFoundError:       # a release before this one binds the real path at its start
        pass
    settling.answer_now(master, "the master handed its control socket over (mpmctl upgrade)")
    master.control.close(unlink=False)      # the path is the new master's now
    write_pidfile(control.pidfile, owner=successor_pid)


def follow(master) -> bool:
    """In a master `mpmctl upgrade` started, each pass until it holds the control paths:
    True once it does.  Only then do its configuration's session-ticket keys go into the
    shared table: the master it replaces serves with that table until the hand-over, and an
    upgrade that fails before it must leave it the keys it had (review 2026-12-03-upgrade #1:
    tickets issued before a failed upgrade no longer resumed).  And its logs are reopened, its
    workers' too: a `mpmctl reopen` until now reached the master that held the control socket,
    not this one, which would write on into a rotated file (review 2026-12-04-today #7)."""
    if not _holds_control_paths(master):
        return False
    master.ticket_keys.configure(master.config.tls)
    masterlog.reopen(master.workers)
    return True


def _holds_control_paths(master) -> bool:
    """True once this master holds the control paths (the master it replaces renamed its
    socket there, or is gone: then it takes them itself, unless it is stopping)."""
    from mpm.pidfile import write_pidfile
    control = master.config.control
    if master.control.moved_to(control.socket):
        log.info("upgrade: this master serves; control socket %s and pidfile %s are its own",
                 control.socket, control.pidfile)
        return True
    if os.getppid() == master.upgrade_from:
        if master.predecessor_renames or not _predecessor_retired(master):
            return False
        why = "has handed over (a release that leaves the control paths to its successor)"
    elif master.stopping:
        return True
    else:
        why = "is gone without handing over"
    try:
        os.rename(master.control.path, control.socket)
    except OSError as exc:
        log.error("upgrade: cannot move the control socket to %s: %s", control.socket, exc.strerror or exc)
    master.control.moved_to(control.socket)
    write_pidfile(control.pidfile)
    log.warning("upgrade: master pid %d %s; control socket %s and pidfile %s taken",
                master.upgrade_from, why, control.socket, control.pidfile)
    return True


def _predecessor_retired(master) -> bool:
    """The master we replace has retired its workers: none of its rows is starting, ready or
    full any more.  A release before the hand-over by rename (no "control" in MPM_INHERIT)
    closes its control socket then and renames nothing: waiting for its exit left `mpmctl`
    talking to a master that no longer serves for the whole drain, and `stop` or `reload`
    reached it and not us (review 2026-12-04-versions r01)."""
    old = master.predecessor_generation or 0
    return not any(row["generation"] <= old and row["state"] in ("starting", "ready", "full")
                   for row in master.scoreboard.live_rows())


def successor_config(config, inherit: dict):
    """In the new master: the control paths of the master it replaces (they are renamed into
    place at the hand-over; a changed one takes effect at the next start, as for a reload)."""
    paths = inherit.get("control")
    if not paths or (paths["pidfile"], paths["socket"]) == (config.control.pidfile, config.control.socket):
        return config
    import dataclasses
    log.warning("control paths changed: they take effect at the next restart")
    return dataclasses.replace(config, control=dataclasses.replace(config.control, **paths))


def _reclaim_control(master) -> None:
    """The new master exited.  A release before this one took the pidfile and the control
    socket at its start and removed them at its exit: we serve on, so they are ours again
    (else `mpmctl` would say "not running" to a master that serves).  This release never
    takes them before the hand-over, so nothing is done then."""
    from mpm.control import ControlServer
    from mpm.pidfile import read_pid, write_pidfile
    control = master.config.control
    try:
        os.unlink(staging_path(control.socket))     # a successor that was killed leaves its file
    except FileNotFoundError:
        pass
    if master.control.holds(control.socket) and read_pid(control.pidfile) == os.getpid():
        return
    write_pidfile(control.pidfile)
    settling.answer_now(master, "the master took its control socket back")
    master.control.close(unlink=False)
    master.control = ControlServer(control.socket, master.selector, master._control_request)
    log.warning("upgrade: pidfile %s and control socket %s are this master's again", control.pidfile, control.socket)


def forget_orphans(master) -> int | None:
    """After a successor died: the rows of its workers (a newer generation than
    `master.orphans`, not ours) go once those workers have exited, their counts folded into
    the past, so /metrics and the hand-over stop seeing a generation that will never serve.
    Nobody else reaps them (their parent is gone).  `master.orphans` while some of them still
    run, else None."""
    from mpm.pidfile import pid_alive
    left = False
    for index, row in master.scoreboard.live_rows_indexed():
        if row["generation"] <= master.orphans or row["pid"] in master.workers:
            continue
        if row["pid"] and pid_alive(row["pid"]):
            left = True
            continue
        master.metrics.fold(index)
        master.scoreboard.free(index)
    return master.orphans if left else None
