"""/metrics (issue #14): valid for Prometheus's own parser and promtool, counters that move by
exactly what the test sends, and totals that survive a reload and a worker's death."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest
from admin_util import admin_port, admin_section, get, scrape, value
from rawsock import read_head, recv_until_eof, status_of
from support import free_port, wait_for
from wsutil import OP_TEXT, close_frame, frame, upgrade_request

BODY = b"x" * 123


def _http(proxy, request: bytes) -> bytes:
    """One request on its own connection; everything the proxy sends until it closes."""
    with proxy.connect() as sock:
        sock.sendall(request)
        return recv_until_eof(sock)


def _websocket(proxy, path: str, messages: list[bytes]) -> tuple[int, int]:
    """A raw WebSocket through the proxy: messages, a close handshake, EOF.  (bytes sent, bytes received)."""
    with proxy.connect() as sock:
        out = upgrade_request(path)
        sock.sendall(out)
        head, buf = read_head(sock)
        assert status_of(head) == 101, head
        sent = len(out)
        for message in [*(frame(m, OP_TEXT) for m in messages), close_frame(1000)]:
            sock.sendall(message)
            sent += len(message)
        rest = recv_until_eof(sock, buf)
        return sent, len(head) + len(rest)


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        reason = "promtool is not installed (Debian: apt-get install prometheus); the /metrics lint needs it"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}, and CI is set: CI must run this test")
        pytest.skip(reason)
    return found


def test_metrics_parse_with_prometheus_client_and_pass_promtool(proxy_factory, http_backend):
    promtool = _promtool()
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], admin=admin_section(),
                          balancers={"pool": {"members": [{"url": backend.url, "route": "a"}]}})
    assert _http(proxy, b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 200")
    status, headers, body = get(admin_port(proxy), "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = scrape(proxy)                          # prometheus_client's parser (raises on bad text)
    assert value(samples, "mpm_requests_total", route="/", code_class="2xx") == 1
    assert value(samples, "mpm_balancer_member_weight", balancer="pool", member=backend.url) == 1
    assert value(samples, "mpm_balancer_member_status", balancer="pool", status="enabled") == 1
    assert {labels for name, labels in samples if name == "mpm_worker_resident_memory_bytes"} and \
        value(samples, "mpm_worker_resident_memory_bytes") > 0
    lint = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(), lint


def test_counters_move_by_exactly_the_requests_bytes_and_tunnels_sent(proxy_factory, http_backend, ws_backend):
    backend = http_backend(lambda req, body: (200, [("Content-Type", "text/plain")], BODY))
    echo = ws_backend()
    dead = free_port()
    proxy = proxy_factory([{"path": "/ws/", "to": echo.url + "/"}, {"path": "/api/", "to": backend.url + "/"},
                           {"path": "/down/", "to": f"http://127.0.0.1:{dead}/"}], admin=admin_section())
    before = scrape(proxy)
    sent = received = 0
    for i in range(7):
        request = f"GET /api/item?{i} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode()
        answer = _http(proxy, request)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(BODY)
        sent, received = sent + len(request), received + len(answer)
    assert _http(proxy, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert _http(proxy, b"GET /nothing HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 404")
    assert _http(proxy, b"GET /down/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 502")
    ws_sent = ws_received = 0
    for i in range(3):
        out, got = _websocket(proxy, "/ws/chat", [b"hello %d" % i, b"y" * 300])
        ws_sent, ws_received = ws_sent + out, ws_received + got

    wait_for(lambda: value(scrape(proxy), "mpm_tunnels_closed_total") - value(before, "mpm_tunnels_closed_total") == 3,
             10, 0.1, "three tunnels counted closed")
    after = scrape(proxy)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)
    assert delta("mpm_requests_total", route="/api/", code_class="2xx") == 7
    assert delta("mpm_requests_total", route="/api/") == 7
    assert delta("mpm_received_bytes_total", route="/api/") == sent
    assert delta("mpm_sent_bytes_total", route="/api/") == received
    assert delta("mpm_request_duration_seconds_count", route="/api/") == 7
    assert delta("mpm_request_duration_seconds_bucket", route="/api/", le="+Inf") == 7
    assert delta("mpm_request_duration_seconds_sum", route="/api/") > 0
    # every request is in the histogram, whatever its route: 7 + 400 + 404 + 502 + three 101s
    assert delta("mpm_requests_total") == delta("mpm_request_duration_seconds_count") == 13
    assert delta("mpm_requests_total", route="/ws/", code_class="1xx") == 3
    assert delta("mpm_received_bytes_total", route="/ws/") == ws_sent
    assert delta("mpm_sent_bytes_total", route="/ws/") == ws_received
    assert delta("mpm_tunnels_opened_total") == 3
    assert delta("mpm_tunnels_closed_total", reason="closed") == 3
    assert delta("mpm_requests_refused_total", reason="malformed") == 1
    assert delta("mpm_requests_refused_total", reason="no_route") == 1
    assert delta("mpm_requests_refused_total") == 2
    assert delta("mpm_backend_errors_total", route="/down/", reason="bad_gateway") == 1
    assert delta("mpm_backend_errors_total") == 1
    assert delta("mpm_connections_accepted_total") == 13


def _open_tunnels(proxy, count: int, socks: list) -> None:
    """`count` WebSockets through `proxy`, their sockets put in `socks` (the caller closes them)."""
    for _ in range(count):
        sock = proxy.connect()
        socks.append(sock)
        sock.sendall(upgrade_request("/"))
        head, _ = read_head(sock)
        assert status_of(head) == 101


def test_open_tunnels_show_per_worker_and_generation(proxy_factory, ws_backend):
    echo = ws_backend()
    proxy = proxy_factory([{"path": "/", "to": echo.url + "/"}], admin=admin_section())
    socks = []
    try:
        _open_tunnels(proxy, 4, socks)
        def four():
            samples = scrape(proxy)
            return samples if value(samples, "mpm_worker_tunnels") == 4 else None
        samples = wait_for(four, 5, 0.1, "4 tunnels on the scoreboard")
        assert value(samples, "mpm_worker_tunnels", generation="1") == 4
        assert value(samples, "mpm_worker_connections", generation="1") == 4
        pids = {dict(labels)["pid"] for name, labels in samples if name == "mpm_worker_tunnels"}
        assert pids == {str(pid) for pid in proxy.worker_pids()}
    finally:
        for sock in socks:
            sock.close()


def test_tunnels_of_a_killed_worker_are_counted_closed(proxy_factory, ws_backend):
    """A worker killed (SIGKILL, the OOM killer) never counts the close of its tunnels: the
    master does, as "other", when it folds the dead worker's row, so opened minus closed is
    the tunnels open again (soak review 2026-12-05 #2: it stayed 20 too high for good)."""
    echo = ws_backend()
    proxy = proxy_factory([{"path": "/", "to": echo.url + "/"}], admin=admin_section(), workers=1)
    socks = []
    try:
        _open_tunnels(proxy, 3, socks)
        wait_for(lambda: value(scrape(proxy), "mpm_worker_tunnels") == 3, 5, 0.1, "3 tunnels on the scoreboard")
        [victim] = proxy.worker_pids()
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: proxy.worker_pids() and victim not in proxy.worker_pids(), 15, 0.1, "the worker replaced")
        samples = scrape(proxy)
        assert value(samples, "mpm_tunnels_opened_total") == 3
        assert value(samples, "mpm_tunnels_closed_total", reason="other") == 3
        assert value(samples, "mpm_tunnels_closed_total") == 3
    finally:
        for sock in socks:
            sock.close()


def test_an_open_tunnel_counts_its_bytes_while_it_lasts(proxy_factory, ws_backend):
    """A WebSocket that stays open shows its traffic within ~5 s (counted every tenth heartbeat),
    not only when it ends; and closing it adds the rest, never twice."""
    echo = ws_backend()
    proxy = proxy_factory([{"path": "/ws/", "to": echo.url + "/ws/"}], admin=admin_section(), workers=1)
    received = lambda: value(scrape(proxy), "mpm_received_bytes_total", route="/ws/") or 0   # noqa: E731
    with proxy.connect() as sock:
        out = upgrade_request("/ws/")
        sock.sendall(out)
        head, buf = read_head(sock)
        assert status_of(head) == 101
        message = frame(b"y" * 50_000, OP_TEXT)
        sock.sendall(message)
        echoed = len(buf)
        while echoed < 50_000:                  # the echo, so the proxy has relayed it both ways
            echoed += len(sock.recv(65536))
        # (the upgrade's head counted with its 101 at once, the message's bytes while it is open)
        wait_for(lambda: received() == len(out) + len(message), 8, 0.2, "the open tunnel's bytes in /metrics")
        sock.sendall(close_frame(1000))
        recv_until_eof(sock)
    wait_for(lambda: value(scrape(proxy), "mpm_tunnels_closed_total") == 1, 5, 0.1, "the tunnel closed")
    time.sleep(0.6)                             # one more scoreboard write
    assert received() == len(out) + len(message) + len(close_frame(1000))

def _monotonic(before: dict, after: dict) -> list:
    """Counter samples of `before` that went down (or vanished) in `after`; per-process series
    (pid-labelled) end with their process and are not compared."""
    bad = []
    for (name, labels), old in before.items():
        if not name.endswith(("_total", "_bucket", "_count", "_sum")) or any(k == "pid" for k, _ in labels):
            continue
        new = after.get((name, labels))
        if new is None or new < old:
            bad.append((name, dict(labels), old, new))
    return bad


def test_totals_survive_a_reload_and_a_worker_killed(proxy_factory, http_backend, ws_backend):
    backend = http_backend()
    echo = ws_backend()
    proxy = proxy_factory([{"path": "/ws/", "to": echo.url + "/"}, {"path": "/", "to": backend.url + "/"}],
                          admin=admin_section())
    for _ in range(5):
        assert _http(proxy, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 200")
    _websocket(proxy, "/ws/", [b"one"])
    wait_for(lambda: value(scrape(proxy), "mpm_tunnels_closed_total") == 1, 5, 0.1, "the tunnel counted")
    before = scrape(proxy)
    assert value(before, "mpm_generation") == 1 and value(before, "mpm_requests_total") == 6

    assert proxy.reload().returncode == 0
    proxy.wait_ready(generation=2)
    wait_for(lambda: all(dict(labels)["generation"] == "2" for name, labels in scrape(proxy)
                         if name == "mpm_worker_state"), 15, 0.1, "generation 1 gone")
    after = scrape(proxy)
    assert value(after, "mpm_generation") == 2
    assert value(after, "mpm_worker_state", generation="2", state="ready") == 2
    assert value(after, "mpm_reloads_total", result="ok") == 1
    assert _monotonic(before, after) == []
    assert value(after, "mpm_requests_total") == 6 and value(after, "mpm_request_duration_seconds_count") == 6

    # a refused reload (SIGHUP with a broken file: mpmctl would not even ask) counts as failed
    proxy.write_config({**proxy.config, "mpm": {**proxy.config["mpm"], "workers": "two"}})
    os.kill(proxy.proc.pid, signal.SIGHUP)
    wait_for(lambda: value(scrape(proxy), "mpm_reloads_total", result="failed") == 1, 5, 0.1, "a failed reload")
    proxy.write_config()
    # a worker that dies keeps its counts in the totals; its replacement counts on
    for _ in range(3):
        assert _http(proxy, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 200")
    victims = proxy.worker_pids()
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: set(proxy.worker_pids()).isdisjoint(victims) and len(proxy.worker_pids()) == 2, 15, 0.1,
             "both workers replaced")
    final = scrape(proxy)
    assert _monotonic(after, final) == []
    assert value(final, "mpm_requests_total") == 9
    assert value(final, "mpm_worker_restarts_total", cause="signal") == 2
    assert value(final, "mpm_generation") == 2


def test_openmetrics_when_the_scraper_asks(proxy_factory, http_backend):
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], admin=admin_section())
    with socket.create_connection(("127.0.0.1", admin_port(proxy)), timeout=5) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: a\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n")
        data = recv_until_eof(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Content-Type: application/openmetrics-text" in head and body.endswith(b"# EOF\n")


def test_handed_over_tunnels_and_their_pause_are_counted(proxy_factory, ws_backend):
    echo = ws_backend()
    proxy = proxy_factory([{"path": "/", "to": echo.url + "/"}], admin=admin_section())
    socks = []
    try:
        for _ in range(3):
            sock = proxy.connect()
            sock.sendall(upgrade_request("/"))
            assert status_of(read_head(sock)[0]) == 101
            socks.append(sock)
        assert proxy.reload().returncode == 0
        # The successor counts a tunnel as it adopts it, then answers; the predecessor counts
        # it sent when it reads that answer: a scrape between the two sees 3 adopted, 2 sent.
        samples = wait_for(lambda: (s := scrape(proxy)) and value(s, "mpm_tunnels_handed_over_total", side="adopted")
                           == 3 and value(s, "mpm_tunnels_handed_over_total", side="sent") == 3 and s,
                           10, 0.1, "3 adopted and 3 sent")
        assert value(samples, "mpm_tunnel_handover_pause_seconds_count") == 3
        assert 0 < value(samples, "mpm_tunnel_handover_pause_seconds_sum") < 3
        assert value(samples, "mpm_tunnels_opened_total") == 3           # moved, not opened again
        assert value(samples, "mpm_worker_tunnels", generation="2") == 3 or wait_for(
            lambda: value(scrape(proxy), "mpm_worker_tunnels", generation="2") == 3, 5, 0.1, "on the scoreboard")
    finally:
        for sock in socks:
            sock.close()
    wait_for(lambda: value(scrape(proxy), "mpm_tunnels_closed_total") == 3, 10, 0.1, "3 tunnels closed")


def test_a_single_handed_over_tunnel_counts_its_own_pause(proxy_factory, ws_backend):
    """The pause of the one tunnel a worker adopts is the one counted (it was the previous
    item's, and 0.0 for the first: review 2026-12-06 #2)."""
    echo = ws_backend()
    proxy = proxy_factory([{"path": "/", "to": echo.url + "/"}], workers=1, admin=admin_section())
    sock = proxy.connect()
    try:
        sock.sendall(upgrade_request("/"))
        assert status_of(read_head(sock)[0]) == 101
        assert proxy.reload().returncode == 0
        samples = wait_for(lambda: (s := scrape(proxy)) and value(s, "mpm_tunnel_handover_pause_seconds_count") == 1
                           and s, 10, 0.1, "one adopted")
        assert 0 < value(samples, "mpm_tunnel_handover_pause_seconds_sum") < 3
    finally:
        sock.close()


def _keepalive_get(sock: socket.socket) -> bytes:
    """One request on a kept-alive connection; the response's status line (its body is read)."""
    sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    head, buf = read_head(sock)
    length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
    while len(buf) < length:
        buf += sock.recv(65536)
    return head.split(b"\r\n", 1)[0]


def test_handed_over_keepalive_connections_are_counted(proxy_factory, http_backend):
    """A reload hands the idle keep-alive connections to the new generation (issue #19): how
    many, each side, as the tunnels' (an operator who sees none moved knows why clients
    reconnected)."""
    proxy = proxy_factory([{"path": "/", "to": http_backend().url + "/"}], admin=admin_section(), workers=1)
    socks = [proxy.connect() for _ in range(3)]
    try:
        for sock in socks:
            assert _keepalive_get(sock).startswith(b"HTTP/1.1 200")
        before = scrape(proxy)
        assert value(before, "mpm_keepalive_connections_handed_over_total", side="sent") == 0
        assert proxy.reload().returncode == 0
        name = "mpm_keepalive_connections_handed_over_total"      # (sent is counted on the answer: above)
        samples = wait_for(lambda: (s := scrape(proxy)) and value(s, name, side="adopted") == 3
                           and value(s, name, side="sent") == 3 and s, 10, 0.1, "3 adopted and 3 sent")
        assert value(samples, "mpm_tunnels_handed_over_total", side="sent") == 0
        for sock in socks:                  # served by the new generation, on the same connections
            assert _keepalive_get(sock).startswith(b"HTTP/1.1 200")
    finally:
        for sock in socks:
            sock.close()


def test_balancer_member_counters_never_go_back_across_a_reload(proxy_factory, http_backend):
    backend = http_backend()
    dead = f"http://127.0.0.1:{free_port()}"
    proxy = proxy_factory([{"path": "/", "to": "balancer://pool/"}], admin=admin_section(),
                          balancers={"pool": {"method": "byrequests", "retry": 0,
                                              "members": [{"url": dead}, {"url": backend.url}]}})
    for _ in range(4):
        assert _http(proxy, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 200")
    before = scrape(proxy)
    assert value(before, "mpm_balancer_member_failures_total", member=dead) >= 1
    assert value(before, "mpm_balancer_member_requests_total", member=backend.url) == 4
    assert value(before, "mpm_balancer_member_traffic_bytes_total", member=backend.url) > 0
    assert value(before, "mpm_balancer_member_busy") == 0
    assert proxy.reload().returncode == 0
    proxy.wait_ready(generation=2)
    # the old generation's table is closed once its workers are gone: its counts are carried
    wait_for(lambda: all(dict(labels)["generation"] == "2" for name, labels in scrape(proxy)
                         if name == "mpm_worker_state"), 15, 0.1, "generation 1 gone")
    time.sleep(0.6)                                     # a housekeeping pass or two: the table is closed
    after = scrape(proxy)
    assert _monotonic(before, after) == []
    assert _http(proxy, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 200")
    final = scrape(proxy)
    requests = value(final, "mpm_balancer_member_requests_total")
    assert requests > value(before, "mpm_balancer_member_requests_total")


def test_tls_handshakes_are_counted_by_result(proxy_factory, http_backend, tmp_path):
    import ssl

    import trustme
    backend = http_backend()
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_path, key_path = tmp_path / "c.pem", tmp_path / "c.key"
    cert.private_key_pem.write_to_path(str(key_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], start=False, admin=admin_section())
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}",
                               "tls": {"cert": str(cert_path), "key": str(key_path)}}]
    proxy.start()
    context = ssl.create_default_context()
    ca.configure_trust(context)
    session = None
    for _ in range(3):        # a full handshake, then two that offer its session (issue #20)
        with context.wrap_socket(proxy.connect(), server_hostname="localhost", session=session) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            assert recv_until_eof(sock).startswith(b"HTTP/1.1 200")
            reused = sock.session_reused
            session = sock.session        # (TLS 1.3: its ticket arrived with the response)
    with proxy.connect() as sock:                      # plain HTTP on a TLS port: the handshake fails
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        with contextlib.suppress(ConnectionResetError):      # reset or closed, as the kernel has it
            recv_until_eof(sock)
    samples = wait_for(lambda: (s := scrape(proxy)) and value(s, "mpm_tls_handshakes_total", result="failed") == 1
                       and s, 5, 0.1, "a failed handshake")
    assert value(samples, "mpm_tls_handshakes_total", result="ok") == 3
    assert reused and value(samples, "mpm_tls_sessions_reused_total") == 2
