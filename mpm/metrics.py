"""/metrics: the shared-memory tables as Prometheus metrics, through prometheus_client.

One custom collector reads, at scrape time, what the workers counted (shm/metrics.py: summed
over the workers alive and the counts of those gone), the scoreboard (per worker: state,
connections, tunnels), the balancer member tables, and psutil (RSS and CPU of every
process).  No per-process registry, no multiprocess directory: the master owns one
registry holding only this collector, and nothing is kept between scrapes except psutil's
Process objects.

Counters (`_total`, and the histograms) never go backwards while the server lives: a
reload adds a generation that counts on in the same table, and `mpmctl upgrade` hands the
table to the next master.  Gauges carry `generation`, `pid` and `slot` where they describe
one worker.
"""

from __future__ import annotations

import os
import time

import psutil
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import choose_encoder

from shm import metrics as m
from shm.members import STATUSES

_processes: dict[int, psutil.Process] = {}


def render(master, accept: str = "") -> tuple[bytes, str]:
    """(body, content type) of one scrape; OpenMetrics when the scraper asks for it."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector(master))
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


def _process(pid: int):
    """(rss bytes, user seconds, system seconds), or None once the process is gone."""
    try:
        proc = _processes.get(pid)
        if proc is None:
            proc = _processes[pid] = psutil.Process(pid)
        with proc.oneshot():
            times = proc.cpu_times()
            return proc.memory_info().rss, times.user, times.system
    except (psutil.Error, OSError):
        _processes.pop(pid, None)
        return None


def _histogram(name: str, doc: str, labels, bounds, cells, total: float, family=None, values=()):
    family = family or HistogramMetricFamily(name, doc, labels=labels)
    running, buckets = 0, []
    for bound, count in zip((*bounds, float("inf")), cells, strict=True):
        running += count
        buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
    family.add_metric(list(values), buckets, total)
    return family


class Collector:
    def __init__(self, master):
        self.master = master

    def collect(self):
        master = self.master
        rows = master.scoreboard.live_rows_indexed()
        totals = master.metrics.totals([index for index, _ in rows])
        yield from self._server(master, totals)
        yield from self._workers(master, rows)
        yield from self._traffic(master.metrics.route_names(), totals)
        yield from self._tunnels(totals)
        yield from self._balancers(master)
        yield from self._discovery(master)

    # == the master ==============================================================================
    def _server(self, master, totals):
        yield GaugeMetricFamily("mpm_generation", "Configuration generation now serving (reloads and upgrades "
                                "start a new one).", value=master.generation)
        yield GaugeMetricFamily("mpm_master_start_time_seconds", "When this master started, Unix time.",
                                value=master.started)
        code, _ = master.readiness.health(master)
        yield GaugeMetricFamily("mpm_up", "1 when /healthz answers 200: the current generation serves.",
                                value=1 if code == 200 else 0)
        reloads = CounterMetricFamily("mpm_reloads", "Graceful reloads asked for, by result (failed: the "
                                      "configuration was refused and the running one kept serving).", labels=["result"])
        for result, count in zip(m.RELOAD_RESULTS, totals.master_counts("reloads", len(m.RELOAD_RESULTS)), strict=True):
            reloads.add_metric([result], count)
        yield reloads
        restarts = CounterMetricFamily("mpm_worker_restarts", "Workers replaced without being asked to stop, by "
                                       "cause: signal or exit (died), watchdog (stuck), recycle "
                                       "(max_connections_per_child).", labels=["cause"])
        for cause, count in zip(m.RESTART_CAUSES, totals.master_counts("restarts", len(m.RESTART_CAUSES)), strict=True):
            restarts.add_metric([cause], count)
        yield restarts
        figures = _process(os.getpid())
        if figures is not None:
            yield GaugeMetricFamily("mpm_master_resident_memory_bytes", "Resident memory of the master.",
                                    value=figures[0])
            # A series per master process, as per worker: `mpmctl upgrade` starts a new one
            # (that process's CPU from zero) instead of the one counter going backwards.
            cpu = CounterMetricFamily("mpm_master_cpu_seconds", "CPU time of the master process.",
                                      labels=["pid", "mode"])
            cpu.add_metric([str(os.getpid()), "user"], figures[1])
            cpu.add_metric([str(os.getpid()), "system"], figures[2])
            yield cpu

    def _workers(self, master, rows):
        labels = ["pid", "slot", "generation"]
        state = GaugeMetricFamily("mpm_worker_state", "1 for each worker process's scoreboard state.",
                                  labels=[*labels, "state"])
        conns = GaugeMetricFamily("mpm_worker_connections", "Open client connections (tunnels included).",
                                  labels=labels)
        tunnels = GaugeMetricFamily("mpm_worker_tunnels", "Open tunnels (WebSocket and other upgrades).",
                                    labels=labels)
        h2_conns = GaugeMetricFamily("mpm_worker_http2_connections", "Open HTTP/2 client connections (among "
                                     "the connections).", labels=labels)
        h2_streams = GaugeMetricFamily("mpm_worker_http2_streams", "Streams open on them (RFC 8441 WebSockets "
                                       "among them are tunnels too).", labels=labels)
        rss = GaugeMetricFamily("mpm_worker_resident_memory_bytes", "Resident memory of the worker.", labels=labels)
        cpu = CounterMetricFamily("mpm_worker_cpu_seconds", "CPU time of the worker.", labels=[*labels, "mode"])
        beat = GaugeMetricFamily("mpm_worker_heartbeat_age_seconds", "Seconds since the worker last wrote its "
                                 "scoreboard row (the watchdog acts past mpm.watchdog).", labels=labels)
        now, seen = time.time(), set()
        for _, row in rows:
            values = [str(row["pid"]), str(row["slot"]), str(row["generation"])]
            seen.add(row["pid"])
            state.add_metric([*values, row["state"]], 1)
            conns.add_metric(values, row["connections"])
            tunnels.add_metric(values, row["tunnels"])
            h2_conns.add_metric(values, row.get("h2_connections", 0))
            h2_streams.add_metric(values, row.get("h2_streams", 0))
            beat.add_metric(values, max(now - row["updated"], 0.0))
            figures = _process(row["pid"])
            if figures is not None:
                rss.add_metric(values, figures[0])
                cpu.add_metric([*values, "user"], figures[1])
                cpu.add_metric([*values, "system"], figures[2])
        for pid in list(_processes):
            if pid not in seen and pid != os.getpid():
                del _processes[pid]
        yield from (state, conns, tunnels, h2_conns, h2_streams, rss, cpu, beat)

    # == what the workers counted ===================================================================
    def _traffic(self, routes, totals):
        requests = CounterMetricFamily("mpm_requests", "Requests answered, by route and status class (a 101 "
                                       "that became a tunnel counts here; none: no status was sent).",
                                       labels=["route", "code_class"])
        received = CounterMetricFamily("mpm_received_bytes", "Bytes received from clients, heads and tunnels "
                                       "included (a tunnel's when it closes).", labels=["route"])
        sent = CounterMetricFamily("mpm_sent_bytes", "Bytes sent to clients, heads and tunnels included (a "
                                   "tunnel's when it closes).", labels=["route"])
        errors = CounterMetricFamily("mpm_backend_errors", "Our own 503 (no member could take it), 502 and 504 "
                                     "answers, by route.", labels=["route", "reason"])
        duration = HistogramMetricFamily("mpm_request_duration_seconds", "From the request head to the last "
                                         "byte of the response (to the 101 for a tunnel).", labels=["route"])
        for rid, name in routes:
            for klass, count in zip(m.CODE_CLASSES, totals.requests_by_class(rid), strict=True):
                requests.add_metric([name, klass], count)
            received.add_metric([name], totals.route(rid, "received")[0])
            sent.add_metric([name], totals.route(rid, "sent")[0])
            for reason, count in zip(m.BACKEND_ERRORS, totals.route(rid, "backend_errors", 3), strict=True):
                errors.add_metric([name, reason], count)
            _histogram("", "", None, m.DURATION_BOUNDS, totals.duration_buckets(rid), totals.duration_sum(rid),
                       duration, [name])
        refused = CounterMetricFamily("mpm_requests_refused", "Requests answered by the proxy itself with a 4xx, "
                                      "by reason: malformed (400), method (405), limits (413, 414, 429, 431), "
                                      "timeout (408), no_route (404).", labels=["reason"])
        for reason, count in zip(m.REFUSALS, totals.worker("refused", len(m.REFUSALS)), strict=True):
            refused.add_metric([reason], count)
        accepted = CounterMetricFamily("mpm_connections_accepted", "Client connections accepted.",
                                       value=totals.worker("accepted")[0])
        tls = CounterMetricFamily("mpm_tls_handshakes", "TLS handshakes on the listeners, by result.",
                                  labels=["result"])
        for result, count in zip(m.TLS_RESULTS, totals.worker("tls", 2), strict=True):
            tls.add_metric([result], count)
        # nginx Plus's ssl.session_reuses: the resumption rate is reused / result="ok".
        reused = CounterMetricFamily("mpm_tls_sessions_reused", "TLS handshakes that resumed a session "
                                     "(ticket or cache), a part of mpm_tls_handshakes{result=\"ok\"}.",
                                     value=totals.worker("tls_reused")[0])
        yield from (requests, duration, received, sent, errors, refused, accepted, tls, reused)

    def _tunnels(self, totals):
        yield CounterMetricFamily("mpm_tunnels_opened", "Tunnels opened (101 Switching Protocols relayed).",
                                  value=totals.worker("tunnels_opened")[0])
        closed = CounterMetricFamily("mpm_tunnels_closed", "Tunnels ended, by reason.", labels=["reason"])
        for reason, count in zip(m.TUNNEL_ENDS, totals.worker("tunnels_closed", len(m.TUNNEL_ENDS)), strict=True):
            closed.add_metric([reason], count)
        yield closed
        handed = CounterMetricFamily("mpm_tunnels_handed_over", "Tunnels passed between workers (reload, "
                                     "upgrade, recycling): sent by a stopping worker, adopted by its successor.",
                                     labels=["side"])
        for side, count in zip(m.HANDOVER_SIDES, totals.worker("handed_over", 2), strict=True):
            handed.add_metric([side], count)
        yield handed
        clients = CounterMetricFamily("mpm_keepalive_connections_handed_over", "Idle keep-alive connections "
                                      "passed between workers (reload, upgrade, recycling): sent by a stopping "
                                      "worker, adopted by its successor.", labels=["side"])
        for side, count in zip(m.HANDOVER_SIDES, totals.worker("clients_handed_over", 2), strict=True):
            clients.add_metric([side], count)
        yield clients
        yield _histogram("mpm_tunnel_handover_pause_seconds", "How long a handed-over tunnel did not relay.",
                         [], m.HANDOVER_BOUNDS, totals.worker("handover_pause", len(m.HANDOVER_BOUNDS) + 1),
                         totals.handover_pause_sum)

    # == balancers ==================================================================================
    def _balancers(self, master):
        labels = ["balancer", "member"]
        status = GaugeMetricFamily("mpm_balancer_member_status", "1 for the member's status (the file, DNS, "
                                   "or `mpmctl balancer set`).", labels=[*labels, "status"])
        healthy = GaugeMetricFamily("mpm_balancer_member_healthy", "1 unless health checks hold the member down.",
                                    labels=labels)
        in_error = GaugeMetricFamily("mpm_balancer_member_in_error", "1 while a failure keeps the member in "
                                     "error state (retry=).", labels=labels)
        weight = GaugeMetricFamily("mpm_balancer_member_weight", "Load factor.", labels=labels)
        busy = GaugeMetricFamily("mpm_balancer_member_busy", "Exchanges and tunnels open on the member, every "
                                 "generation's.", labels=labels)
        counters = {name: CounterMetricFamily(f"mpm_balancer_member_{name}", doc, labels=labels) for name, doc in (
            ("requests", "Requests (and tunnels) sent to the member."),
            ("traffic_bytes", "Bytes to and from the member, both ways."),
            ("failures", "Backend errors on the member: failed connects, sends and reads, failonstatus."))}
        for (balancer, url), member in master.balancers.member_metrics():
            values = [balancer, url]
            for name in STATUSES[:-1]:
                status.add_metric([*values, name], 1 if member["status"] == name else 0)
            healthy.add_metric(values, 1 if member["health"] == "up" else 0)
            in_error.add_metric(values, 1 if member["state"] == "error" else 0)
            weight.add_metric(values, member["weight"])
            busy.add_metric(values, member["busy"])
            counters["requests"].add_metric(values, member["requests"])
            counters["traffic_bytes"].add_metric(values, member["bytes"])
            counters["failures"].add_metric(values, member["failures"])
        yield from (status, healthy, in_error, weight, busy, *counters.values())

    def _discovery(self, master):
        """Members from DNS: a failing resolver keeps the last good set (README), so without
        these only `mpmctl balancer` showed that the set was no longer followed (review
        2026-12-03-dns #6; HAProxy's stats count each nameserver's answers and failures)."""
        labels = ["balancer"]
        failures = CounterMetricFamily("mpm_balancer_dns_failures", "DNS lookups of the balancer's `discover:` "
                                       "that failed (the last good set stays).", labels=labels)
        failing = GaugeMetricFamily("mpm_balancer_dns_failing", "Lookups failed in a row now (0: the last "
                                    "one answered).", labels=labels)
        age = GaugeMetricFamily("mpm_balancer_dns_answer_age_seconds", "Seconds since DNS last gave the "
                                "balancer's members (NaN: not yet).", labels=labels)
        now = time.time()
        for name, discovery in master.balancers.discoveries.items():
            failures.add_metric([name], discovery.failures)
            failing.add_metric([name], discovery.failing)
            age.add_metric([name], now - discovery.answered if discovery.answered else float("nan"))
        yield from (failures, failing, age)
