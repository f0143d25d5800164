"""One event worker process: accept, serve, publish to the scoreboard, stop gracefully.

The master forks us with the listening sockets of our slot already bound (one
SO_REUSEPORT socket per listener per slot), a scoreboard row to write, and the read
end of a pipe whose write end only the master holds: EOF on it means the master is
gone and we must not outlive it.

Signals only set flags (and wake the loop through `signal.set_wakeup_fd`):
    SIGTERM            graceful stop: stop accepting, finish exchanges, let tunnels end
                       until graceful_timeout, then close what remains and exit 0
    SIGQUIT, SIGINT    immediate stop
"""

from __future__ import annotations

import collections
import errno
import os
import signal
import socket
import time

import setproctitle

from worker.backend import BackendPool, Origins
from worker.balancer import Balancers
from worker.client import ClientConnection
from worker.handover import CONNECT_PATIENCE, HandoverReceiver, connect_successor, send_tunnel
from worker.logs import AccessLog, ErrorLog, LogSink
from worker.loop import EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, EventLoop
from worker.routing import Router
from worker.tls import ServerHandshake, listener_context

ACCEPT_BATCH = 32            # accepts per readiness event: fairness against busy connections
PUBLISH_INTERVAL = 0.5       # seconds between scoreboard updates
EMFILE_BACKOFF = 0.1         # seconds to stop accepting when out of file descriptors


class Worker:
    def __init__(self, config, listeners, slot: int, generation: int, scoreboard_row, parent_fd: int,
                 peers=lambda: [], balancer_table=None, tls_contexts: dict | None = None):
        self.config = config
        self.listeners = listeners          # [(socket, conf.Listener)]
        self.slot = slot
        self.generation = generation
        self.row = scoreboard_row
        self.parent_fd = parent_fd
        self.peers = peers                  # the scoreboard's live rows: where a successor is found
        self.tls_contexts = tls_contexts or {}   # listener address -> SSLContext, made by the master
        self.balancer_table = balancer_table  # worker.balancer.MemberTable in shared memory (None: our own)
        self.started_wall = time.time()
        self.handover = None                # connection to the successor while handing over
        self.handover_deadline = 0.0
        mpm = config.mpm
        share = -(-mpm.max_request_workers // mpm.workers)   # MaxRequestWorkers spread over the slots
        self.capacity = min(mpm.threads_per_child, share)
        self.timeouts = config.timeouts
        self.limits = config.limits
        self.tls_failures = 0
        self.connections = 0
        self.tunnels = 0
        self.requests = 0
        self.accepted = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.stopping = False
        self.accepting = False
        self._reverse: dict = {}
        # The live objects, by kind (the loop's `timed` set is for deadlines only).
        self.clients: set = set()
        self.tunnel_set: set = set()
        self.handshakes: set = set()
        self._signals: list[int] = []

    # == setup and run ===================================================================
    def run(self) -> int:
        setproctitle.setproctitle(f"mpm: worker gen {self.generation} slot {self.slot}")
        loop = self.loop = EventLoop()
        log = self.config.log
        self.access_sink = LogSink(log.access, 1)
        self.error_sink = LogSink(log.error, 2)
        self.access = AccessLog(self.access_sink, log.format) if self.access_sink.enabled else None
        self.log_error = ErrorLog(self.error_sink, log.level,
                                  f"pid {os.getpid()} slot {self.slot} gen {self.generation}")
        loop.after_poll.append(self._flush_logs)
        self.origins = Origins()
        self.router = Router(self.config.routes, self.timeouts.proxy, self.origins)
        self.lb = Balancers(self.config.balancers, self.balancer_table, self.log_error, os.getpid(), self.origins)
        self.pool = BackendPool(loop)
        self.receiver = HandoverReceiver(self)      # bound before we report ready
        self._install_signals()
        loop.add(self.parent_fd, EPOLLIN, self._on_parent_event)
        for sock, listener in self.listeners:
            sock.setblocking(False)
            context = self.tls_contexts.get(listener.address) if listener.tls is not None else None
            if listener.tls is not None and context is None:
                context = listener_context(listener.tls)
            loop.add(sock.fileno(), EPOLLIN, lambda mask, sock=sock, context=context: self._accept(sock, context))
        self.accepting = True
        self._publish()
        self.log_error("debug", f"serving {', '.join(str(listener) for _, listener in self.listeners)}")
        loop.run()
        self._shutdown()
        return 0

    def _install_signals(self) -> None:
        rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._wakeup = rfd
        signal.set_wakeup_fd(wfd)
        for signum in (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT):
            signal.signal(signum, lambda signum, frame: self._signals.append(signum))
        for signum in (signal.SIGHUP, signal.SIGUSR1, signal.SIGWINCH):
            signal.signal(signum, signal.SIG_IGN)    # the master's business
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        self.loop.add(rfd, EPOLLIN, self._on_wakeup)

    def _on_wakeup(self, mask: int) -> None:
        try:
            while os.read(self._wakeup, 512):
                pass
        except BlockingIOError:
            pass
        while self._signals:
            signum = self._signals.pop(0)
            if signum == signal.SIGTERM:
                self.graceful_stop()
            else:
                self.loop.running = False

    def _on_parent_event(self, mask: int) -> None:
        self.log_error("error", "master process is gone: exiting")
        self.loop.running = False

    # == accepting ===========================================================================
    def _accept(self, lsock: socket.socket, context) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, addr = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self.log_error("error", f"accept: {exc.strerror}; pausing accepts")
                    self._pause_accepting()
                    self.loop.call_later(EMFILE_BACKOFF, self._maybe_resume)
                return
            sock.setblocking(False)
            if sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.connections += 1
            self.accepted += 1
            if context is None:
                ClientConnection(self, sock, addr[0].encode())
            else:
                self.handshakes.add(ServerHandshake(
                    self, context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False),
                    addr[0].encode()))
            if self.connections >= self.capacity:
                self._pause_accepting()
                return
            max_per_child = self.config.mpm.max_connections_per_child
            if max_per_child and self.accepted >= max_per_child:
                self.log_error("info", f"MaxConnectionsPerChild ({max_per_child}) reached: recycling")
                self.graceful_stop()
                return

    def _pause_accepting(self) -> None:
        if self.accepting:
            self.accepting = False
            for sock, _ in self.listeners:
                self.loop.modify(sock.fileno(), 0)

    def _maybe_resume(self) -> None:
        if not self.accepting and not self.stopping and self.connections < self.capacity:
            self.accepting = True
            for sock, _ in self.listeners:
                self.loop.modify(sock.fileno(), EPOLLIN)

    # == what connections tell us ===============================================================
    def connection_closed(self) -> None:
        self.connections -= 1
        if not self.accepting and self.connections < self.capacity:
            self._maybe_resume()
        if self.stopping and self.connections == 0:
            self.loop.running = False

    def exchange_done(self, exchange) -> None:
        self.requests += 1
        self.bytes_in += exchange.received
        self.bytes_out += exchange.sent
        if self.access is not None:
            self.access.exchange(exchange, self.loop.now - exchange.started)

    def handshake_done(self, handshake) -> None:
        self.handshakes.discard(handshake)
        ClientConnection(self, handshake.sock, handshake.client_ip, tls=True)

    def handshake_failed(self) -> None:
        self.tls_failures += 1

    def tunnel_opened(self, tunnel) -> None:
        self.tunnels += 1
        self.requests += 1
        self.tunnel_set.add(tunnel)
        if self.stopping and self.handover is not None:
            self.loop.call_soon(lambda: self._hand_over([tunnel]))

    def tunnel_adopted(self, tunnel) -> None:
        """A tunnel handed over by a worker that is stopping."""
        self.connections += 1
        self.tunnels += 1
        self.tunnel_set.add(tunnel)
        if self.connections >= self.capacity:
            self._pause_accepting()

    def tunnel_closed(self, tunnel, reason: str) -> None:
        self.tunnels -= 1
        self.tunnel_set.discard(tunnel)
        self.bytes_in += tunnel.bytes_in
        self.bytes_out += tunnel.bytes_out
        if self.access is not None:
            self.access.tunnel(tunnel.context, tunnel.bytes_in, tunnel.bytes_out, self.loop.now - tunnel.started,
                               reason)
        self.connection_closed()

    # == helpers for exchanges =================================================================
    def pick_backend(self, route, head, client_ip: bytes = b"", tried=()):
        """(Origin, balancer member index or None, Set-Cookie line or None); Origin None: 503.
        A member stays counted busy until `self.lb.end(member, ...)`."""
        if route.origin is not None:
            return route.origin, None, None
        return self.lb.pick(route.balancer, head, client_ip, tried)

    def reverse_map(self, route, origin, head, proto_line: bytes) -> tuple:
        """(backend URL prefix, client URL prefix) for ProxyPassReverse."""
        key = (id(route), id(origin), head.host, proto_line)
        pair = self._reverse.get(key)
        if pair is None:
            base = route.base if route.prefix is not None else b"/"
            client_path = route.prefix if route.prefix is not None else b"/"
            host = head.host or origin.host_line[6:-2]
            proto = b"https" if b"https" in proto_line else b"http"
            pair = self._reverse[key] = (origin.origin_bytes + base, proto + b"://" + host + client_path)
        return pair

    # == stopping ===================================================================================
    def graceful_stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.access_sink.flush()       # what is logged so far goes out now, not at the exit
        self._pause_accepting()
        for sock, _ in self.listeners:
            self.loop.remove(sock.fileno())
            sock.close()
        self.listeners = []
        # Keep-alive connections idle between requests: close them now.  A connection
        # that has not sent its first request yet is not idle; it gets client_header.
        for client in list(self.clients):
            if client.idle:
                client.close()
        if self.connections == 0:
            self.loop.running = False
            return
        self.log_error("info", f"graceful stop: {self.connections} connections "
                               f"({self.tunnels} tunnels) left, {self.config.mpm.graceful_timeout:g}s to go")
        self._publish()
        self.loop.call_later(self.config.mpm.graceful_timeout, self._graceful_timeout)
        if self.tunnels:
            self.handover_deadline = self.loop.now + CONNECT_PATIENCE
            self._find_successor()

    # == hand-over ====================================================================================
    def _successors(self) -> list[int]:
        """Workers that took over from us: a newer generation, or our slot's replacement
        (recycling); our own slot's first.  Empty when the whole server is stopping."""
        me = os.getpid()
        found = []
        for row in self.peers():
            if row["pid"] in (0, me) or row["state"] not in ("ready", "busy"):
                continue
            newer = row["generation"] > self.generation or (
                row["generation"] == self.generation and row["slot"] == self.slot
                and row["started"] > self.started_wall)
            if newer:
                found.append((row["slot"] != self.slot, -row["generation"], row["pid"]))
        return [pid for *_, pid in sorted(found)]

    def _find_successor(self) -> None:
        pids = self._successors()
        same_slot = any(row["pid"] in pids and row["slot"] == self.slot for row in self.peers())
        if pids and not same_slot and self.loop.now < self.handover_deadline - CONNECT_PATIENCE + 1.0:
            pids = []      # our slot's successor is probably still starting: give it a second
        sock = connect_successor(pids) if pids else None
        if sock is None:
            if self.loop.now < self.handover_deadline and self.tunnels:
                self.loop.call_later(0.05, self._find_successor)
            elif self.tunnels:
                self.log_error("info", f"no successor to hand {self.tunnels} tunnels to: "
                                       "they stay here until they close or graceful_timeout")
            return
        self.handover = sock
        self.handover_queue = collections.deque()
        self.handover_moved = 0
        self._hand_over(list(self.tunnel_set))

    def _hand_over(self, tunnels: list) -> None:
        """Queue tunnels for the successor; they go as fast as it takes them (EPOLLOUT)."""
        if self.handover is None:
            return
        self.handover_queue.extend(tunnel for tunnel in tunnels if tunnel.movable)
        if not self.handover_queue:
            self._handover_report()
        elif self.handover.fileno() not in self.loop.handlers:
            self.loop.add(self.handover.fileno(), EPOLLOUT, self._on_handover_writable)

    def _on_handover_writable(self, mask: int) -> None:
        queue = self.handover_queue
        failure = "the successor went away" if mask & (EPOLLERR | EPOLLHUP) else None
        while queue and failure is None:
            tunnel = queue.popleft()
            if tunnel.closed:
                continue
            try:
                kept = send_tunnel(self.handover, tunnel, self.loop)
            except OSError as exc:
                failure = f"a tunnel was lost mid-record: {exc}"
                self.tunnels -= 1
                self.connections -= 1
                break
            if kept is not None:
                local, error = kept
                if getattr(error, "errno", None) == errno.EMSGSIZE:
                    continue                        # a record too big for the socket: this one stays here
                queue.appendleft(local)
                if isinstance(error, BlockingIOError):
                    return                          # its queue is full: wait for EPOLLOUT
                failure = f"the successor stopped taking tunnels: {error}"
                break
            self.handover_moved += 1
            self.tunnel_set.discard(tunnel)
            self.tunnels -= 1
            self.connections -= 1
        self.loop.remove(self.handover.fileno())
        if failure is not None:
            self.log_error("error", f"hand-over: {failure}; the rest stay here")
            queue.clear()
            self.handover.close()
            self.handover = None
        self._handover_report()

    def _handover_report(self) -> None:
        left = len(self.tunnel_set)
        self.log_error("info", f"hand-over: passed {self.handover_moved} tunnels to the successor; "
                               f"{left} stay here (TLS or not passed)")
        self._publish()
        if self.connections == 0:
            self.loop.running = False

    def _graceful_timeout(self) -> None:
        self.log_error("info", f"graceful timeout: closing {self.connections} connections")
        self.loop.running = False

    def _shutdown(self) -> None:
        if self.handover is not None:
            self.handover.close()
        self.receiver.close()
        for client in list(self.clients):
            client.close()
        for handshake in list(self.handshakes):
            handshake.close()
        for tunnel in list(self.tunnel_set):
            tunnel.close("worker stopping")
        self.pool.close_all()
        self.row.publish(state="exiting", connections=0, tunnels=0, requests=self.requests,
                         bytes_in=self.bytes_in, bytes_out=self.bytes_out, tls_failures=self.tls_failures)
        self.access_sink.close()
        self.error_sink.close()

    # == scoreboard and logs ========================================================================
    def _publish(self) -> None:
        state = "stopping" if self.stopping else ("busy" if not self.accepting else "ready")
        self.row.publish(state=state, connections=self.connections, tunnels=self.tunnels,
                         requests=self.requests, bytes_in=self.bytes_in, bytes_out=self.bytes_out,
                         tls_failures=self.tls_failures)
        self.loop.call_later(PUBLISH_INTERVAL, self._publish)

    def _flush_logs(self) -> None:
        if self.access_sink.pending:
            self.access_sink.flush_due(self.loop.now, self.loop.idle)
        if self.error_sink.pending:
            self.error_sink.flush()
