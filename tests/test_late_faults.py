"""Late faults reviews of operating, of h2 with balancers and of DNS discovery found (each test
failed on 15741fb, before a9c2913 / 5aea670 / 3543d8a / 458f408).

- a `mpmctl upgrade` whose new master cannot start (a `listen` address someone else holds)
  leaves the old master serving *and* reachable: `mpmctl status` answers for it, the pidfile
  names it, and `mpmctl reload` reloads it;
- 64 connections from an allowed address (loopback, the default `admin.allow`) that never
  send a byte do not take the admin listener away from the health probe: /healthz answers
  200 while they are held;
- mpm_worker_restarts_total{cause="recycle"} counts every worker that recycled itself
  (`mpm.max_connections_per_child`): as many as the error log's "MaxConnectionsPerChild" lines;
- rotating the error log (`mv error.log error.log.1; mpmctl reload`) moves the master's own
  lines to the new error.log, as it does the workers';
- a sticky route in the URL (`;JSESSIONID=`, `?JSESSIONID=`) wins over the cookie's, over
  HTTP/1.1 and HTTP/2, as Apache's find_session_route reads them;
- a balancer member that left DNS, once its row is freed, keeps no idle pooled connection
  open in the worker (they closed within a few seconds; they were kept for the pool's 60 s).

Everything runs for real on loopback: a master started through the CLI (`python -m mpm`, from
the checkout under test), real backends (tests/backends.HttpBackend, balancer_util.Member),
dnsmasq for DNS (the `dns_server` fixture), raw-socket and h2 clients; every wait has a
deadline and everything started is stopped by pid."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import threading

import psutil
import pytest
from admin_util import admin_port, admin_section, scrape, value
from balancer_util import KeepAlive, Member, members_section
from h2client import H2Client
from rawsock import get_status, recv_until_eof, status_of
from support import wait_for
from test_balancer_dns import ROUTES, a_records, discovering, members


def _get(proxy, path: str = "/", headers: str = "") -> int | str:
    return get_status(proxy, path, headers, timeout=5)


def _settled(read, done, what: str, timeout: float):
    """`read()` once `done(value)`; else an AssertionError naming the last value seen."""
    seen = []

    def check():
        seen.append(read())
        return done(seen[-1])
    try:
        wait_for(check, timeout, 0.1, what)
    except AssertionError:
        raise AssertionError(f"{what}: still {seen[-1]!r} after {timeout}s") from None
    return seen[-1]


# == 1. a failed upgrade ======================================================================

@pytest.mark.timeout(60)
def test_after_a_failed_upgrade_mpmctl_still_reaches_the_master_that_serves(proxy_factory, http_backend):
    """`mpmctl upgrade` fails (here the edited config listens on an address another program
    holds): the old master serves on, and the operator can still see it (`mpmctl status`,
    the pidfile) and reload it once the config is fixed; systemd's ExecReload is mpmctl reload."""
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1)
    master = proxy.proc.pid
    pidfile = os.path.join(proxy.dir, "run", "mpm.pid")
    control = os.path.join(proxy.dir, "run", "mpm.sock")
    listen = list(proxy.config["listen"])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        proxy.config["listen"] = listen + [f"127.0.0.1:{taken.getsockname()[1]}"]
        proxy.write_config()
        upgrade = proxy.mpmctl("upgrade", timeout=60)
        assert upgrade.returncode != 0, f"the upgrade succeeded on an address in use: {upgrade.stdout}"
        started = re.findall(r"upgrade: started master pid (\d+)", proxy.error_text())
        assert started, f"no successor was started: {upgrade.stderr}{proxy.error_text()[-500:]}"
        successor = int(started[-1])
        proxy.seen_pids.add(successor)
        wait_for(lambda: not psutil.pid_exists(successor)
                 or psutil.Process(successor).status() == psutil.STATUS_ZOMBIE, 20, 0.1, "the successor to exit")
    assert proxy.proc.poll() is None and _get(proxy, "/after-upgrade") == 200, "the old master does not serve"
    # its real exit status (our SIGCHLD reaper took it from Popen, which then said 0)
    failed = _settled(lambda: re.findall(r"upgrade failed: the new master (.*); still serving", proxy.error_text()),
                      bool, "the failed upgrade in the error log", 5)
    assert failed == ["exited with status 1"], failed

    def status():
        result = proxy.mpmctl("status", "--json")
        return result.returncode, result.stdout if result.returncode == 0 else result.stderr.strip()
    try:
        _, text = _settled(status, lambda s: s[0] == 0, "`mpmctl status` after the failed upgrade", 10)
    except AssertionError as exc:
        raise AssertionError(f"{exc}, while master {master} serves; pidfile exists: {os.path.exists(pidfile)}, "
                             f"control socket exists: {os.path.exists(control)}") from None
    assert json.loads(text)["master_pid"] == master, text
    with open(pidfile) as f:
        assert int(f.read()) == master, "the pidfile does not name the master that serves"

    proxy.config["listen"] = listen           # the operator fixes the config and reloads
    proxy.write_config()
    reload = proxy.reload()
    assert reload.returncode == 0, f"`mpmctl reload` after the failed upgrade: {reload.stdout}{reload.stderr}"
    status_after = proxy.wait_ready(generation=2, timeout=15)
    assert status_after["master_pid"] == master
    assert _get(proxy, "/after-reload") == 200


# == 2. the admin listener's slots, taken by an allowed address ==============================

def _healthz(port: int) -> int | str:
    """The status of GET /healthz from 127.0.0.1, or what happened instead."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: admin.test\r\n\r\n")
            answer = recv_until_eof(sock, limit=5)
    except OSError as exc:
        return repr(exc)
    return status_of(answer) or f"closed with no answer ({answer[:40]!r})"


def _open(sock: socket.socket) -> bool:
    """Still open from the server's side (it sent nothing and did not close)."""
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


@pytest.mark.timeout(40)
def test_healthz_answers_while_64_silent_connections_from_an_allowed_address_are_held(proxy_factory, http_backend):
    """Any local process reaches the admin port from loopback (the default `admin.allow`): 64
    connections that never send a byte, renewed as they are closed, must not make the load
    balancer's health probe fail."""
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1, admin=admin_section())
    port = admin_port(proxy)
    assert _healthz(port) == 200
    held: list[socket.socket] = []
    answers = []
    try:
        for _ in range(5):
            for sock in [s for s in held if not _open(s)]:
                held.remove(sock)
                sock.close()
            while len(held) < 64:
                held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            answers.append(_healthz(port))
    finally:
        for sock in held:
            sock.close()
    assert answers == [200] * 5, f"/healthz while 64 silent loopback connections were held: {answers}"
    assert _healthz(port) == 200


# == 3. the recycle counter ===================================================================

@pytest.mark.timeout(60)
def test_every_recycle_is_counted_in_worker_restarts_total(proxy_factory, http_backend):
    """An operator alerting on worker restarts tells recycles (expected, from
    max_connections_per_child) from crashes by mpm_worker_restarts_total's cause: it must
    count each recycle the error log reports."""
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=2, admin=admin_section(),
                          mpm={"max_connections_per_child": 3})
    statuses = [_get(proxy, f"/r{n}") for n in range(30)]
    assert statuses == [200] * 30, statuses

    def read():
        logged = proxy.error_text().count("MaxConnectionsPerChild")
        return logged, value(scrape(proxy), "mpm_worker_restarts_total", cause="recycle")
    _settled(read, lambda s: s[0] >= 5 and s[1] == s[0],
             "(recycles in the error log, mpm_worker_restarts_total{cause=\"recycle\"})", 10)
    assert value(scrape(proxy), "mpm_worker_restarts_total", cause="exit") == 0
    assert value(scrape(proxy), "mpm_worker_restarts_total", cause="signal") == 0


# == 4. the master's error log after a rotation ===============================================

@pytest.mark.timeout(40)
def test_after_rotation_and_reload_the_masters_lines_go_to_the_new_error_log(proxy_factory, http_backend):
    """logrotate moves error.log away and runs `mpmctl reload`: from then on the master's own
    lines (a worker's death, a reload) are in the new error.log, not in the rotated file that
    logrotate compresses or deletes next."""
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1)
    master = proxy.proc.pid
    rotated = proxy.error_log + ".1"
    os.rename(proxy.error_log, rotated)
    reload = proxy.reload()
    assert reload.returncode == 0, reload.stderr
    proxy.wait_ready(generation=2)
    victim = proxy.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)           # the master says so in its error log
    needle = f"worker pid {victim}"

    def where():
        with open(rotated, errors="replace") as f:
            old = f.read()
        return needle in proxy.error_text(), needle in old
    try:
        _settled(where, lambda w: w[0], f"('{needle}' in error.log, in error.log.1)", 5)
    except AssertionError as exc:
        raise AssertionError(f"the master's line on its worker's death after rotation + reload: {exc}") from None
    mine = [line for line in proxy.error_text().splitlines() if f"[master pid {master}]" in line]
    assert any("reloaded: generation 2" in line for line in mine), mine
    assert any(needle in line for line in mine), mine
    with open(rotated, errors="replace") as f:
        old = f.read()
    assert needle not in old and "reloaded: generation 2" not in old, "master lines went to the rotated file"
    proxy.wait_ready(generation=2)
    assert _get(proxy, "/after") == 200


# == 5. sticky route: the URL's before the cookie's ===========================================

@pytest.fixture
def ab():
    """Members a and b (balancer_util.Member: each answers its name)."""
    started = [Member("a"), Member("b")]
    yield started
    for member in started:
        member.close()


@pytest.mark.timeout(40)
def test_a_sticky_route_in_the_url_wins_over_the_cookies(proxy_factory, ab):
    """Tomcat rewrites URLs (`;jsessionid=`) when it does not trust the cookie: a request that
    names one route in its URL and another in its cookie goes to the URL's, as with Apache's
    mod_proxy_balancer, over HTTP/1.1 and HTTP/2."""
    proxy = proxy_factory([{"path": "/", "to": "balancer://cluster/"}], workers=1, start=False,
                          balancers={"cluster": members_section(ab, sticky="JSESSIONID")})
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"}]
    proxy.start()
    cases = [(f"/app{sep}JSESSIONID=fresh.{url}", f"JSESSIONID=stale.{cookie}", url)
             for sep in (";", "?") for url, cookie in (("b", "a"), ("a", "b"))]
    cases += [("/app", "JSESSIONID=only.a", "a"), ("/app", "JSESSIONID=only.b", "b")]
    h1, h2 = KeepAlive(proxy), H2Client(proxy.port)
    try:
        got = {}
        for path, cookie, _ in cases:
            status, _, body = h1.get(path, f"Cookie: {cookie}\r\n")
            stream = h2.get(path, headers=[("cookie", cookie)])
            got[(path, cookie)] = (status, body.decode()), (stream.status, bytes(stream.body).decode())
    finally:
        h1.close()
        h2.close()
    wrong = {(path, cookie): (member, got[(path, cookie)]) for path, cookie, member in cases
             if got[(path, cookie)] != ((200, member), (200, member))}
    assert not wrong, "requests that went to the wrong member, (URL, cookie): (expected, (HTTP/1.1, HTTP/2) " \
        "answers): " + "; ".join(f"{k}: {v}" for k, v in wrong.items())


# == 6. idle pooled connections to a member that left DNS =====================================

@pytest.fixture
def departing():
    """Member A on 127.0.0.2 and B on 127.0.0.3, one port."""
    a = Member("A", host="127.0.0.2")
    b = Member("B", host="127.0.0.3", port=a.port)
    yield a, b
    a.close()
    b.close()


def _connections_to(pid: int, member: Member) -> int:
    return sum(1 for c in psutil.Process(pid).net_connections("tcp")
               if c.raddr and (c.raddr.ip, c.raddr.port) == (member.host, member.port))


def _fresh(proxy) -> tuple[int, str]:
    client = KeepAlive(proxy, timeout=5)
    try:
        status, _, body = client.get("/")
        return status, body.decode()
    finally:
        client.close()


@pytest.mark.timeout(60)
def test_idle_pooled_connections_to_a_member_that_left_dns_close(proxy_factory, dns_server, departing):
    """Under a rolling replacement every departed address would otherwise keep up to 64 idle
    connections per worker for 60 s: fds on the proxy and connection slots on the departed
    backend. Once the member's row is freed, the worker closes them within a few seconds."""
    a, b = departing
    a_records(dns_server, [a])
    proxy = proxy_factory(ROUTES, workers=1, balancers=discovering(dns_server, dns="app.test", type="A",
                                                                   port=a.port, hold=0, interval=0.3))
    wait_for(lambda: _fresh(proxy) == (200, "A"), 10, 0.1, "member A serving")
    worker = proxy.worker_pids()[0]
    barrier = threading.Barrier(16, timeout=10)

    def one():
        barrier.wait()
        _fresh(proxy)
    threads = [threading.Thread(target=one) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    before = _connections_to(worker, a)
    assert before >= 2, f"16 parallel requests left {before} pooled connections to A (the test needs several)"
    a_records(dns_server, [b])
    wait_for(lambda: list(members(proxy)) == [b.url], 10, 0.1, "A's row freed, B the only member")
    assert _fresh(proxy) == (200, "B")        # the worker picks again: it sees the new membership
    try:
        _settled(lambda: _connections_to(worker, a), lambda n: n == 0,
                 f"the worker's connections to {a.url} (it had {before})", 5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the member left DNS and its row was freed") from None
    assert proxy.worker_pids() == [worker]
