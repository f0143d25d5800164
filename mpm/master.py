"""The master (gunicorn's arbiter pattern): it binds, forks, watches, and never serves.

Signal handlers only enqueue; the loop dispatches `handle_<signal>`:
    SIGHUP, SIGUSR1    graceful reload into a new generation (nginx/gunicorn style; Apache's
                       own SIGHUP is a hard restart, its SIGUSR1 the graceful one)
    SIGUSR2            reopen the log files (`mpmctl reopen`: nginx's USR1, taken here)
    SIGTERM, SIGWINCH  graceful stop
    SIGINT, SIGQUIT    immediate stop
    SIGCHLD            reap, and respawn what should be running

A reload validates the new config and binds what it adds before touching anything; on
any error the running generation keeps serving, untouched, and the error is logged.

Operating it (mpm/adminsite.py, mpm/readiness.py, mpm/systemd.py): the admin listener is
served from this loop; systemd hears READY/RELOADING/STOPPING/MAINPID through
$NOTIFY_SOCKET and may pass the listening sockets (LISTEN_FDS); the counters the workers
keep for /metrics live in a shared table (shm/metrics.py) that this master folds a
worker's row into when it reaps it, and hands to the next master on `mpmctl upgrade`.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import signal
import time

import setproctitle

from mpm import commands, masterlog, reloading, settling, supervision, upgrade
from mpm.adminsite import AdminSite
from mpm.balancer_manager import BalancerManager
from mpm.clients import ClientTables
from mpm.control import ControlServer
from mpm.listeners import ListenerSet
from mpm.pidfile import remove_pidfile, write_pidfile
from mpm.readiness import Readiness
from mpm.supervision import KILL_GRACE, WorkerRecord
from mpm.systemd import Notifier, address_of, listen_fds
from mpm.tlskeys import TicketKeys
from shm.metrics import RELOAD_RESULTS, MetricsTable
from shm.scoreboard import Scoreboard

TICK = 0.25                   # seconds between housekeeping passes

log = logging.getLogger("mpm.master")

HANDLED = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM, signal.SIGWINCH, signal.SIGINT,
           signal.SIGQUIT, signal.SIGCHLD)


class Master:
    def __init__(self, config_path: str | None, config):
        inherit = json.loads(os.environ.pop("MPM_INHERIT", "{}"))   # from the master we replace
        upgrade_from = os.environ.get("MPM_UPGRADE_FROM")
        self.upgrade_from = int(upgrade_from) if upgrade_from else None   # until we hold the control paths
        self.config_path = config_path
        self.config = config = upgrade.successor_config(config, inherit)
        self.workers: dict[int, WorkerRecord] = {}
        self.slots: dict[int, int] = {}            # current generation: slot -> pid
        self.crashes: dict[int, int] = {}          # slot -> consecutive crashes
        self.respawn_at: dict[int, float] = {}     # slot -> monotonic time to start it
        # systemd's sockets (socket activation), by address; what no listener takes is closed
        self.activated = {address_of(sock): sock for sock in listen_fds()}
        self.listeners = ListenerSet({(address.rsplit("|", 1)[0], int(address.rsplit("|", 1)[1])): fds
                                      for address, fds in inherit.get("listeners", {}).items()}, self.activated)
        self.scoreboard = Scoreboard(fd=inherit.get("scoreboard"))
        upgrade.check_takeover(self.upgrade_from, inherit, self.scoreboard)
        self.metrics = MetricsTable(fd=inherit.get("metrics"))
        self.route_ids: dict[str, int] = {}
        self.inherited_admin = inherit.get("admin")
        self.inherited_counts = inherit.get("member_table") or inherit.get("member_counts")
        self.readiness = Readiness(Notifier(), inherit.get("ready_fd"))
        self.inherited_discovery = inherit.get("discovered", {})   # what DNS gave the master we replace
        self.generation = inherit.get("generation", 0)
        self.predecessor_generation = self.generation if inherit else None   # `mpmctl upgrade`: whose workers serve meanwhile
        self.predecessor_renames = bool(inherit.get("control"))     # it moves the control paths to us (upgrade.py)
        self.ticket_keys = TicketKeys(inherit.get("ticket_keys"))   # TLS session-ticket keys, carried on
        if self.upgrade_from is None:   # else at the hand-over (upgrade.follow): the table is shared
            self.ticket_keys.configure(config.tls)
        self.successor = None                      # the new master while `mpmctl upgrade` runs
        self.pending_reloads: list = []            # answers waiting for their generation (mpm.settling)
        self.successor_ready = None                # a pipe: it writes a byte there once it serves
        self.successor_deadline = 0.0
        self.successor_kill_at = 0.0
        self.orphans = None                        # a dead successor's workers may hold rows above this generation
        self.handed_to = None                      # the new master after the hand-over, while we drain
        self.fall_back_until = None                # it died: until when we try to take the service back
        self.signals: list[int] = []
        self.stopping = None                       # None, "graceful", "now" or "upgrade" (a successor serves)
        self.started = time.time()
        self.last_mrw_warning = 0.0

    # == running ========================================================================
    def run(self) -> int:
        if self.upgrade_from is None:     # else the master we replace writes it at the hand-over
            write_pidfile(self.config.control.pidfile)
        try:
            self._setup()
            self.admin.prepare(self.config.admin)
            self.admin.commit(self.config.admin)
            self.listeners.prepare(self.config)
            self.listeners.commit()
            for address, sock in self.activated.items():
                log.warning("socket activation: fd %d (%s) matches no listener in the configuration: closed",
                            sock.fileno(), address)
                sock.close()
            self.new_generation()
            self._loop()
        finally:
            self._cleanup()
        return 0

    def _setup(self) -> None:
        self._set_title()
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake_w)
        for signum in HANDLED:
            signal.signal(signum, lambda signum, frame: self.signals.append(signum))
        self.selector.register(self.wake_r, selectors.EVENT_READ, None)
        # Workers watch the read end; only we hold the write end, so our death is their EOF.
        self.parent_r, self.parent_w = os.pipe2(os.O_CLOEXEC)
        path = self.config.control.socket
        self.control = ControlServer(upgrade.staging_path(path) if self.upgrade_from else path, self.selector,
                                     self._control_request)
        # the shared member table, before any fork
        self.balancers = BalancerManager(self.config, self.selector, self.inherited_discovery, self.inherited_counts)
        self.admin = AdminSite(self, self.selector, self.inherited_admin, self.activated)
        self.clients = ClientTables()          # per-client limits, shared by every worker
        log.info("master pid %d started with %s", os.getpid(), self.config.file)
        # The worker's modules, imported once here rather than by every forked worker (as
        # gunicorn's preload and Apache's modules loaded before the fork): a respawned worker
        # serves without ~60 ms of imports first (several times that on a loaded machine),
        # and their pages are shared.  New code comes by `mpmctl upgrade` (a re-exec) as before.
        import worker.process  # noqa: F401
        masterlog.warn_unverified(self.config)

    def _set_title(self) -> None:
        setproctitle.setproctitle(f"mpm: master -c {self.config.file} gen {self.generation}")

    def _loop(self) -> None:
        next_tick = time.monotonic()
        while True:
            timeout = max(next_tick - time.monotonic(), 0)
            if self.pending_reloads:
                timeout = min(timeout, settling.POLL)
            for key, _ in self.selector.select(timeout):
                if key.data is None:
                    self._drain_wakeup()
                else:
                    self._contained(key.data)
            while self.signals:
                signum = self.signals.pop(0)
                self._contained(getattr(self, "handle_" + signal.Signals(signum).name.lower()))
            if self.pending_reloads:
                self._contained(lambda: settling.settle(self))
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + TICK
                self._contained(self._housekeeping)
            if self.stopping and not self.workers and self.successor is None and not upgrade.falling_back(self):
                log.info("all workers gone: master exiting")
                return

    @staticmethod
    def _contained(work) -> None:
        """One callback's bug (a DNS answer, a health probe, the admin site) is logged with its
        traceback and the master goes on: its death would take every worker with it."""
        try:
            work()
        except Exception:       # noqa: BLE001 - see the docstring
            log.exception("master: %s failed; carrying on", getattr(work, "__qualname__", work))

    def _drain_wakeup(self) -> None:
        try:
            while os.read(self.wake_r, 512):
                pass
        except BlockingIOError:
            pass

    # == signals ================================================================================
    def handle_sighup(self) -> None:
        self.reload()

    handle_sigusr1 = handle_sighup

    def handle_sigusr2(self) -> None:
        masterlog.reopen(self.workers)

    def handle_sigterm(self) -> None:
        self.stop(now=False)

    handle_sigwinch = handle_sigterm

    def handle_sigint(self) -> None:
        self.stop(now=True)

    handle_sigquit = handle_sigint

    def handle_sigchld(self) -> None:
        """Reap, and start at once what should run again now (a first death: no back-off),
        not at the next housekeeping tick, up to TICK later (README: "within a second")."""
        supervision.reap(self)
        if upgrade.falling_back(self):     # at once: our last draining worker may be about to go
            self._contained(lambda: upgrade.fall_back(self, time.monotonic()))
        if not self.stopping:
            self._contained(lambda: supervision.respawn_due(self, time.monotonic()))

    # == generations =============================================================================
    def reload(self) -> list[str]:
        """Graceful reload; returns config errors (empty on success)."""
        if self.stopping:
            return ["the server is stopping"]
        if self.successor is not None:   # it inherited our next generation number: both would use it
            return ["an upgrade is under way (mpmctl upgrade): reload once it is done"]
        self.readiness.reloading(self)
        try:
            errors = reloading.reload(self)
        except Exception:       # noqa: BLE001 - logged; the generation that serves goes on serving
            log.exception("reload failed")
            errors = ["the reload failed (see the error log)"]
        self.metrics.count("reloads", RELOAD_RESULTS.index("failed" if errors else "ok"))
        self.readiness.reload_done(not errors)
        return errors

    def new_generation(self, tls_contexts: dict | None = None) -> None:
        # Built before the fork (a reload builds them while it validates, mpm.reloading); their
        # session-ticket keys are the master's (mpm.tlskeys), so a TLS session resumes on any
        # worker of any generation.
        self.tls_contexts = self.ticket_keys.contexts(self.config) if tls_contexts is None else tls_contexts
        self.client_table = self.clients.for_generation(self.config, self.workers)
        # Past every row's: a successor that died in `mpmctl upgrade` counted on from ours (forget_orphans)
        self.generation = max(self.generation, self.scoreboard.newest_generation()) + 1
        self._set_title()
        self.route_ids = self.metrics.register_routes(route.name for route in self.config.routes)
        self.slots = {}
        self.crashes = {}
        self.respawn_at = {}
        for slot in range(self.config.mpm.workers):
            self.spawn(slot)

    def spawn(self, slot: int) -> bool:
        """Fork the current generation's worker of `slot`, and retire the older generation's
        worker of that slot, which served it until now.  A fork the system refuses (EAGAIN: a
        task limit; ENOMEM) or a full scoreboard ends neither the master nor a reload half-way:
        the slot is tried again soon (supervision.spawn_failed), and the older worker serves
        it meanwhile."""
        generation = self.generation
        try:
            row = self.scoreboard.claim(generation, slot)
        except RuntimeError as exc:
            return supervision.spawn_failed(self, slot, str(exc))
        self.metrics.fold(row)          # counts nobody folded (a master that died): they happened
        # A signal sent to the child before it drops our handlers (a stop right after a reload)
        # would run them in the child and be lost there: held until the child has the default
        # ones (an idle new worker stopped that way loses nothing).
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
        try:
            pid = os.fork()
        except OSError as exc:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)
            self.scoreboard.free(row)
            return supervision.spawn_failed(self, slot, f"fork failed: {exc.strerror or exc}")
        if pid:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)
        else:
            code = 1
            try:
                code = self._child(slot, generation, row)
            except BaseException:   # noqa: B036 - a forked child must never return into our loop
                logging.getLogger("mpm.worker").exception("worker crashed")
            finally:
                os._exit(code)
        self.scoreboard.bind(row, pid)
        self.workers[pid] = WorkerRecord(pid, generation, slot, row, self.config.mpm.graceful_timeout)
        self.slots[slot] = pid
        for record in list(self.workers.values()):
            if record.slot == slot and record.generation < generation and not record.retired:
                self.retire(record)
        return True

    def _child(self, slot: int, generation: int, row: int) -> int:
        """In the forked worker: shed the master's descriptors, then serve."""
        from worker.process import Worker
        signal.set_wakeup_fd(-1)
        for signum in HANDLED:      # (a reopen's SIGHUP before the worker listens for it: not fatal)
            signal.signal(signum, signal.SIG_IGN if signum == signal.SIGHUP else signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)
        mine = self.listeners.for_slot(slot)
        keep = {id(sock) for sock, _ in mine}
        for sock in self.listeners.all_sockets():
            if id(sock) not in keep:
                sock.close()
        self.control.close_in_child()
        masterlog.forget_in_child()
        self.balancers.close_in_child()
        self.admin.close_in_child()
        self.readiness.close_in_child()
        self.clients.close_in_child()
        self.selector.close()
        for fd in (self.wake_r, self.wake_w, self.parent_w):
            os.close(fd)
        scoreboard_row = self.scoreboard.row_for_child(row, os.getpid(), generation, slot)
        return Worker(self.config, mine, slot, generation, scoreboard_row, self.parent_r,
                      peers=self.scoreboard.live_rows, balancer_table=self.balancers.table,
                      client_table=self.client_table,
                      tls_contexts=self.tls_contexts, metrics_row=self.metrics.worker_row(row, self.route_ids)).run()

    def retire(self, record: WorkerRecord, sig: int = signal.SIGTERM) -> None:
        record.retired = True
        record.kill_at = time.monotonic() + record.graceful + KILL_GRACE    # (nginx: the old cycle's)
        try:
            os.kill(record.pid, sig)
        except ProcessLookupError:
            pass

    # == housekeeping ==============================================================================
    def _housekeeping(self) -> None:
        now = time.monotonic()
        if self.upgrade_from is not None and upgrade.follow(self):
            self.upgrade_from = None
        if self.successor is not None:
            upgrade.watch(self, now)
        elif upgrade.falling_back(self):
            upgrade.fall_back(self, now)
        elif self.orphans is not None:
            self.orphans = upgrade.forget_orphans(self)
        if not self.stopping:
            supervision.respawn_due(self, now)
            supervision.recycle_stopping_workers(self)
            supervision.check_max_request_workers(self)
            supervision.watchdog(self)
            if self.successor is None:      # during an upgrade the next master rotates (one writer)
                self.ticket_keys.tick()
            self.balancers.tick(self.workers)     # free dead workers' cells, run health checks
            self.clients.tick(self.workers)
            self.readiness.tick(self)             # READY=1 / STATUS= to systemd
        self.admin.expire(now)
        self.control.tick(now)
        supervision.kill_overdue(self, now)

    # == stopping =====================================================================================
    def stop(self, now: bool) -> None:
        self.handed_to = None     # told to go: no taking the service back (upgrade.fall_back)
        if self.stopping == "now" or (self.stopping and not now):
            return
        if not self.stopping:
            self.readiness.stopping()         # not after an upgrade: the service lives on in the new master
        self.stopping = "now" if now else "graceful"
        log.info("%s stop requested", "immediate" if now else "graceful")
        if self.successor is not None:
            upgrade.abandon(self, now)
        self.respawn_at.clear()
        for record in self.workers.values():
            self.retire(record, signal.SIGQUIT if now else signal.SIGTERM)
            if now:
                record.kill_at = time.monotonic() + 2.0
        self.listeners.close_all()   # stop means refuse new clients; the control socket stays for status

    def _cleanup(self) -> None:
        for record in self.workers.values():
            try:
                os.kill(record.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid, record in list(self.workers.items()):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            self.metrics.fold(record.row)
            self.scoreboard.free(record.row)
        self.listeners.close_all()
        if hasattr(self, "admin"):
            self.admin.close()
        if hasattr(self, "control"):
            self.control.moved_to(self.config.control.socket)    # handed over since the last pass?
            settling.answer_now(self, "the master is exiting")
            self.control.close()
        remove_pidfile(self.config.control.pidfile)

    # == control socket ===================================================================================
    def _control_request(self, request: dict):
        return commands.answer(self, request)
