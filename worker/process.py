"""One event worker process: its parts wired together, its counts, and its way out.

The master forks us with the listening sockets of our slot already bound (one
SO_REUSEPORT socket per listener per slot), a scoreboard row to write, and the read
end of a pipe whose write end only the master holds.  The parts, each in its module:
    worker.signals    signals, the watch on the master, the watchdog's stack dump
    worker.acceptor   accepting, capacity, running out of file descriptors
    worker.client     client connections (worker.exchange: their requests)
    worker.handover   tunnels passed to and taken from other workers (worker.handsend: the sending half)
    worker.stopping   the two ways out below
The worker itself keeps the counts the scoreboard shows (written every PUBLISH_INTERVAL:
that write is also the heartbeat the master's watchdog reads) and decides when to stop:

    graceful   stop accepting, close idle keep-alive connections, finish exchanges, hand
               plain tunnels to the successor; exit when nothing is left or at
               graceful_timeout
    immediate  close everything now
"""

from __future__ import annotations

import os
import time

import setproctitle

from conf.model import HEARTBEAT_INTERVAL
from shm.metrics import scratch_row
from tunnel.tunnel import relay_turns
from worker import stopping
from worker.acceptor import Acceptor
from worker.admission import Admission, Arrivals
from worker.backend import BackendPool, Origins
from worker.balancer import Balancers
from worker.faults import Faults
from worker.handover import HandoverReceiver
from worker.handsend import HandoverSender
from worker.lane import count_in_c
from worker.linger import LingeringSet
from worker.logs import AccessLog, ErrorLog
from worker.logsink import LogSink
from worker.loop import EventLoop
from worker.metrics import WorkerMetrics
from worker.rewrite import ReverseMaps
from worker.routing import Router
from worker.signals import WorkerSignals

PUBLISH_INTERVAL = HEARTBEAT_INTERVAL     # seconds between scoreboard writes (the watchdog's heartbeat)
# A long-lived tunnel's bytes are counted (scoreboard, /metrics) every this many heartbeats
# while it lasts, not only when it ends: a WebSocket streaming for hours would show nothing.
# One pass over the worker's tunnels every 5 s: ~1 ms for 5,000 of them.
TUNNEL_BYTES_BEATS = 10
LOG_DRAIN = 0.01             # seconds to the next try at a log backlog the reader is taking


def _nothing() -> None:
    """A timer that only makes the loop turn (and so write the logs: worker.loop)."""


class Worker:
    def __init__(self, config, listeners, slot: int, generation: int, scoreboard_row, parent_fd: int,
                 peers=lambda: [], balancer_table=None, tls_contexts: dict | None = None, metrics_row=None,
                 client_table=None):
        self.config = config
        self.listeners = listeners          # [(socket, conf.Listener)]
        self.slot = slot
        self.generation = generation
        self.row = scoreboard_row
        self.parent_fd = parent_fd
        self.peers = peers                  # the scoreboard's live rows: where a successor is found
        self.tls_contexts = tls_contexts or {}   # listener address -> SSLContext, made by the master
        self.balancer_table = balancer_table  # shm.members.MemberTable in shared memory (None: our own)
        self.client_table = client_table      # shm.clients.ClientTable (per-client limits), or None
        self.started_wall = time.time()
        mpm = config.mpm
        share = -(-mpm.max_request_workers // mpm.workers)   # MaxRequestWorkers spread over the slots
        self.capacity = min(mpm.threads_per_child, share)
        self.timeouts = config.timeouts
        self.limits = config.limits
        # What the scoreboard shows.
        self.connections = self.tunnels = self.requests = self.accepted = 0
        self.bytes_in = self.bytes_out = self.tls_failures = self.moved = 0
        # What /metrics shows: counters in our row of the shared metrics table (shm/metrics.py).
        self.metrics = WorkerMetrics(metrics_row or scratch_row(route.name for route in config.routes))
        count_in_c(self.metrics)
        self.tls_full = self.tls_resumed = 0     # completed handshakes (`handshake_done` counts them)
        self.stopping = False
        self.recycling = False              # stopping on our own (MaxConnectionsPerChild)
        self.reverse_maps = ReverseMaps()     # ProxyPassReverse's prefixes, made once each
        self.client_certs = any(listener.tls is not None and listener.tls.client_ca for _, listener in listeners)
        # The live objects, by kind (the loop's `timed` set is for deadlines only).
        self.clients: set = set()
        self.tunnel_set: set = set()
        self.tunnel_counted: dict = {}      # tunnel -> (bytes_in, bytes_out) already counted
        self.beats = 0
        self.handshakes = Arrivals()        # a set, oldest first (what a full worker closes first)
        self.h2_connections: set = set()    # worker.h2: HTTP/2 connections (each carries many exchanges)
        self.lingering = LingeringSet(self._exit_when_done)    # worker.linger: closed, drained before the close

    # == setup and run ===================================================================
    def run(self) -> int:
        setproctitle.setproctitle(f"mpm: worker gen {self.generation} slot {self.slot}")
        loop = self.loop = EventLoop()
        relay_turns(loop)
        log = self.config.log
        def drain_soon() -> None:       # a log backlog its reader takes in part: on in LOG_DRAIN s
            loop.call_later(LOG_DRAIN, _nothing)
        self.access_sink = LogSink(log.access, 1, buffered=True, wake=drain_soon)
        self.error_sink = LogSink(log.error, 2, wake=drain_soon)
        self.access = AccessLog(self.access_sink, log.format, self.loop) if self.access_sink.enabled else None
        self.log_error = ErrorLog(self.error_sink, log.level,
                                  f"pid {os.getpid()} slot {self.slot} gen {self.generation}")
        loop.sinks += (self.access_sink, self.error_sink)
        loop.contain = Faults(loop, self.log_error, self._internal_error).contain
        self.origins = Origins()
        self.router = Router(self.config.routes, self.timeouts.proxy, self.origins)
        self.lb = Balancers(self.config.balancers, self.balancer_table, self.log_error, os.getpid(), self.origins)
        self.pool = BackendPool(loop, self.timeouts.keepalive)
        self.lb.on_forget = self._forget_origin
        self.receiver = HandoverReceiver(self)      # bound before we report ready
        self.sender = HandoverSender(self)
        self.signals = WorkerSignals(loop, self.parent_fd, self.graceful_stop, self.stop_now, self._parent_gone,
                                     self.error_sink.fd, self._reopen_logs)
        self.admission = Admission(self, self.client_table)
        self.acceptor = Acceptor(self, self.listeners, self.tls_contexts)
        self._heartbeat()
        self.log_error("debug", f"serving {', '.join(str(listener) for _, listener in self.listeners)}")
        loop.run()
        self._shutdown()
        return 0

    def stop_now(self) -> None:
        self.loop.running = False

    def _internal_error(self) -> None:
        """A bug in the worker's own machinery, which no one connection's end contains
        (worker.faults): we go as MaxConnectionsPerChild goes, our tunnels and idle
        connections handed to the replacement the master starts now."""
        if not self.stopping:
            self.recycling = True
            self.graceful_stop()

    def _parent_gone(self) -> None:
        """Our master died: during `mpmctl upgrade`, our tunnels and idle connections go to the
        new master's workers as at a hand-over (review 2026-12-03-upgrade #3: they were cut);
        otherwise nobody would respawn or stop us, and we exit at once (worker.handsend)."""
        self.loop.remove(self.parent_fd)           # its EOF stays readable: said once
        if not self.stopping:                      # (a stop under way goes on, as it would)
            self.sender.after_master_died(self.graceful_stop, self._master_gone_exit)

    def _master_gone_exit(self) -> None:
        self.log_error("error", "master process is gone: exiting")
        self.loop.running = False

    # == what the acceptor and connections tell us =================================================
    def connection_accepted(self, sock, client_ip: bytes, context, proxy_protocol: bool = False) -> bool:
        """A new connection; False when no more should be accepted now."""
        self.connections += 1
        self.accepted += 1
        self.metrics.accepted()
        self.admission.accepted(sock, client_ip, context, proxy_protocol)   # PROXY header, TLS, limits
        if self.connections >= self.capacity and not self.admission.may_make_room():
            self.acceptor.pause()       # full of requests under way: new clients wait in the backlog
            return False
        max_per_child = self.config.mpm.max_connections_per_child
        if max_per_child and self.accepted >= max_per_child:
            self.log_error("info", f"MaxConnectionsPerChild ({max_per_child}) reached: recycling")
            self.recycling = True
            self.graceful_stop()
            return False
        return True

    def connection_closed(self) -> None:
        self.connections -= 1
        if not self.acceptor.accepting and self.connections < self.capacity:
            self.acceptor.resume()
        self._exit_when_done()

    def exchange_done(self, exchange, line: bytes | None = None) -> None:
        """Counted and logged; `line`: its access-log line, written already (worker/_lane_log.c).
        One the lane's C counted for /metrics (`counted`, worker/_lane_count.c) is not again."""
        self.requests += 1
        self.bytes_in += exchange.received
        self.bytes_out += exchange.sent
        access = self.access
        if exchange.counted:
            if line is not None:
                access.add(line)
            elif access is not None:
                access.exchange(exchange, self.loop.now - exchange.started)
            return
        elapsed = self.loop.now - exchange.started
        self.metrics.exchange(exchange, elapsed)
        if access is not None:
            if line is None:
                access.exchange(exchange, elapsed)
            else:
                access.add(line)

    def handshake_done(self, handshake, resumed: bool) -> None:
        """A TLS handshake completed (`resumed`: a session was resumed)."""
        self.handshakes.discard(handshake)
        self.count_handshake(resumed)
        self.admission.handshake_done(handshake)

    def count_handshake(self, resumed: bool) -> None:
        if resumed:
            self.tls_resumed += 1
            self.metrics.handshake_resumed()
        else:
            self.tls_full += 1
            self.metrics.handshake(True)

    def handshake_failed(self) -> None:
        self.tls_failures += 1
        self.metrics.handshake(False)

    def tunnel_opened(self, tunnel, exchange=None) -> None:
        """A 101: the exchange that asked for it counts as a request (its heads), the tunnel's
        bytes as they pass (`_count_tunnel_bytes`)."""
        self.tunnels += 1
        self.requests += 1
        self.metrics.tunnel_opened()
        if exchange is not None:
            self.metrics.exchange(exchange, self.loop.now - exchange.started)
        self.tunnel_set.add(tunnel)
        if self.stopping:
            self.sender.offer(tunnel)

    def tunnel_adopted(self, tunnel, pause: float) -> None:
        """A tunnel handed over by a worker that is stopping, `pause` seconds after it stopped there."""
        self.connections += 1
        self.tunnels += 1
        self.tunnel_set.add(tunnel)
        self.tunnel_counted[tunnel] = (tunnel.bytes_in, tunnel.bytes_out)    # the predecessor's count
        self.metrics.tunnel_adopted(pause)
        self.admission.tunnel_adopted(tunnel)
        if self.stopping:         # a reload came while it was on its way: on to our successor
            self.sender.offer(tunnel)
        elif self.connections >= self.capacity:
            self.acceptor.pause()

    def tunnel_moved(self, tunnel) -> None:
        """Passed to the successor: it is the successor's to count and log now."""
        self._count_tunnel_bytes(tunnel)
        self.tunnel_set.discard(tunnel)
        self.tunnels -= 1
        self.connections -= 1
        self.metrics.tunnel_handed_over()
        self.moved += 1
        self.admission.tunnel_moved(tunnel)
        self.lb.moved(tunnel)     # the successor counts it on its member now

    def client_adopted(self, client) -> None:
        """A keep-alive connection handed over by a worker that is stopping.  Stopping too,
        an idle one goes on to our successor (one with a request already here is served
        first, and offered when that exchange ends)."""
        self.connections += 1
        self.metrics.client_handed_over(True)
        if self.stopping:
            if client.movable and not client.inbuf:
                self.sender.offer(client)
        elif self.connections >= self.capacity:
            self.acceptor.pause()

    def client_moved(self, client) -> None:
        self.connections -= 1
        self.moved += 1
        self.metrics.client_handed_over(False)
        self._exit_when_done()

    def keeps_alive(self, client) -> bool:
        """Whether a response may leave `client` open: always, except while stopping, when
        only a plain connection that a successor can take stays (a TLS session cannot move:
        it is told `Connection: close` on its next response)."""
        return not self.stopping or (not client.ep.tls and self.sender.takes_connections)

    def client_between_requests(self, client) -> bool:
        """While stopping, a connection whose exchange ended with keep-alive (its response said
        so before the stop): to the successor; a TLS one stays idle here, as `_close_idle`
        leaves one (its next request gets `Connection: close`): closed now, the request the
        client may be sending already would meet the close.  False: it stays, served here, as
        while the successor is still looked for (its pipelined requests would wait for nobody:
        review 2026-12-03-handover #3); `sender._find` takes it once connected."""
        sender = self.sender
        if client.movable and sender.takes_connections:
            if sender.sock is not None:
                sender.offer(client)
            return sender.sock is not None
        if not client.ep.tls:
            client.close()
        return not client.ep.tls

    def tunnel_closed(self, tunnel, reason: str) -> None:
        self.stream_tunnel_closed(tunnel, reason)
        self.connection_closed()

    def stream_tunnel_closed(self, tunnel, reason: str) -> None:
        """A tunnel ended: counted and logged.  (An RFC 8441 one was a stream of an HTTP/2
        connection, which stays: only `tunnel_closed` counts the connection as closed too.)"""
        self.tunnels -= 1
        self.tunnel_set.discard(tunnel)
        self.admission.tunnel_closed(tunnel)
        self._count_tunnel_bytes(tunnel)
        self.metrics.tunnel_closed(reason)
        if self.access is not None:
            self.access.tunnel(tunnel.context, tunnel.bytes_in, tunnel.bytes_out, self.loop.now - tunnel.started,
                               reason)

    def _reopen_logs(self) -> None:
        """SIGHUP from the master (`mpmctl reopen`): rotated log files let go, no new generation."""
        self.access_sink.reopen()
        self.error_sink.reopen()
        self.signals.dump_to(self.error_sink.fd)

    # == stopping (worker.stopping) ==================================================================
    graceful_stop = stopping.graceful_stop
    _close_idle = stopping.close_idle
    handover_finished = stopping.handover_finished
    handover_received = stopping.handover_received
    _exit_when_done = stopping.exit_when_done
    _graceful_timeout = stopping.graceful_timeout
    _shutdown = stopping.shutdown

    # == scoreboard and logs ========================================================================
    def _publish(self) -> None:
        """Write our row now ("full": at capacity, not accepting)."""
        state = "stopping" if self.stopping else ("full" if not self.acceptor.accepting else "ready")
        self.row.publish(state=state, connections=self.connections, tunnels=self.tunnels,
                         requests=self.requests, bytes_in=self.bytes_in, bytes_out=self.bytes_out,
                         tls_failures=self.tls_failures, moved=self.moved, tls_full=self.tls_full,
                         tls_resumed=self.tls_resumed, h2_connections=len(self.h2_connections),
                         h2_streams=sum(len(h2.streams) for h2 in self.h2_connections))

    def _forget_origin(self, origin) -> None:
        """A member that left DNS and holds no row here any more: its idle connections close,
        and its Origin is forgotten (worker.balancer.Balancers.on_forget)."""
        self.pool.drop_idle((origin.key,))
        self.origins.forget(origin.backend)

    def _heartbeat(self) -> None:
        """The one timer chain that writes the row (other writes are one-off); also closes
        the tunnels of balancer members that left DNS longer than `discover.hold` ago, and every
        `TUNNEL_BYTES_BEATS` puts what open tunnels moved on the scoreboard and their members."""
        self.beats += 1
        if self.beats % TUNNEL_BYTES_BEATS == 0:
            for tunnel in self.tunnel_set:
                self._count_tunnel_bytes(tunnel)
                self.tunnel_counted[tunnel] = (tunnel.bytes_in, tunnel.bytes_out)
                self.lb.count_traffic(tunnel)
        self._publish()
        for tunnel in self.lb.expired(self.tunnel_set):
            tunnel.close("balancer member left DNS")
        self.loop.call_later(PUBLISH_INTERVAL, self._heartbeat)

    def _count_tunnel_bytes(self, tunnel) -> None:
        """What `tunnel` relayed since it was last counted, into the scoreboard's and the
        metrics' totals; it is then forgotten (the heartbeat notes it again if it goes on)."""
        seen_in, seen_out = self.tunnel_counted.pop(tunnel, (0, 0))
        received, sent = tunnel.bytes_in - seen_in, tunnel.bytes_out - seen_out
        if received or sent:
            self.bytes_in += received
            self.bytes_out += sent
            self.metrics.tunnel_bytes(tunnel, received, sent)

