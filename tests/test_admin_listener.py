"""The admin listener (issue #14): the master's own, never a worker's; `allow`; it answers
while the workers are stopped; /healthz, /server-status; a slow client holds up nothing."""

from __future__ import annotations

import json
import os
import signal
import socket
import time

import pytest
from admin_util import admin_port, admin_section, get, scrape, value
from rawsock import read_head, recv_until_eof, status_of
from support import free_port, wait_for
from wsutil import upgrade_request

from conf import ConfigError, load_config


def test_refused_outside_allow_and_allow_and_port_follow_a_reload(proxy_factory, http_backend):
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], admin=admin_section(allow=["10.0.0.0/8"]))
    port = admin_port(proxy)
    for path in ("/metrics", "/healthz", "/server-status"):
        status, _, body = get(port, path)
        assert status == 403 and b"forbidden" in body
    proxy.config["admin"]["allow"] = ["10.0.0.0/8", "127.0.0.1"]        # the same socket, a new allow
    proxy.write_config()
    assert proxy.reload().returncode == 0
    assert get(port, "/healthz")[0] == 200
    new_port = free_port()                                                # a new address: bound before the swap
    proxy.config["admin"]["listen"] = f"127.0.0.1:{new_port}"
    proxy.write_config()
    assert proxy.reload().returncode == 0
    assert get(new_port, "/healthz")[0] == 200
    with pytest.raises(ConnectionRefusedError):
        get(port, "/healthz")


def test_answers_while_every_worker_is_sigstopped(proxy_factory, http_backend):
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], admin=admin_section(), mpm={"watchdog": 0})
    workers = proxy.worker_pids()
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    try:
        with proxy.connect(timeout=0.5) as sock:             # the data listener: queued, nobody answers
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            with pytest.raises(TimeoutError):
                sock.recv(1)
        started = time.monotonic()
        assert get(admin_port(proxy), "/healthz", timeout=2)[0] == 200
        samples = scrape(proxy)
        assert get(admin_port(proxy), "/server-status", timeout=2)[0] == 200
        assert time.monotonic() - started < 2.0
        assert {dict(labels)["pid"] for name, labels in samples if name == "mpm_worker_state"} == \
            {str(pid) for pid in workers}
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)


def test_not_reachable_on_a_data_listener_and_never_proxying(proxy_factory, http_backend):
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], admin=admin_section())
    for path in ("/metrics", "/server-status", "/healthz"):
        with proxy.connect() as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
            answer = recv_until_eof(sock)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"hello")      # the backend's answer
    assert [r["target"] for r in backend.requests] == ["/metrics", "/server-status", "/healthz"]
    status, _, _ = get(admin_port(proxy), "/anything")
    assert status == 404 and len(backend.requests) == 3
    # the master's own socket: no worker process holds it
    master_fds = {os.readlink(f"/proc/{proxy.proc.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{proxy.proc.pid}/fd")}
    admin_inode = next(link for link in master_fds if link.startswith("socket:") and _listens(link, admin_port(proxy)))
    for pid in proxy.worker_pids():
        assert admin_inode not in {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}


def _listens(link: str, port: int) -> bool:
    """Whether socket:[inode] is the TCP socket listening on `port` (from /proc/net/tcp)."""
    inode = link[len("socket:["):-1]
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[9] == inode and int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
                return True
    return False


def test_a_slow_or_oversized_admin_client_holds_up_nothing(proxy_factory, http_backend):
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], admin=admin_section())
    port = admin_port(proxy)
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(10)]
    try:
        for sock in idle[:5]:
            sock.sendall(b"GET /metr")                   # half a request line, and then nothing
        started = time.monotonic()
        assert get(port, "/healthz")[0] == 200
        assert proxy.status()["generation"] == 1        # the control socket, served by the same loop
        assert proxy.reload().returncode == 0
        assert time.monotonic() - started < 5
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\n" + b"X-Big: " + b"y" * 9000 + b"\r\n\r\n")
            assert recv_until_eof(sock).startswith(b"HTTP/1.1 431")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"POST /metrics HTTP/1.1\r\nHost: a\r\n\r\n")
            assert recv_until_eof(sock).startswith(b"HTTP/1.1 405")
    finally:
        for sock in idle:
            sock.close()


def test_healthz_is_503_while_stopping(proxy_factory, ws_backend):
    echo = ws_backend()
    proxy = proxy_factory([{"path": "/", "to": echo.url + "/"}], admin=admin_section())
    status, headers, body = get(admin_port(proxy), "/healthz")
    assert status == 200 and headers["content-type"] == "application/json" and json.loads(body)["status"] == "ok"
    with proxy.connect() as sock:                        # a tunnel keeps a worker finishing
        sock.sendall(upgrade_request("/"))
        assert status_of(read_head(sock)[0]) == 101
        proxy.proc.send_signal(signal.SIGTERM)
        status, _, body = wait_for(lambda: (r := get(admin_port(proxy), "/healthz"))[0] == 503 and r, 5, 0.05,
                                   "healthz 503")
        assert json.loads(body) == {"status": "unavailable", "reason": "stopping", "generation": 1}
        assert value(scrape(proxy), "mpm_up") == 0
    proxy.proc.wait(15)


def test_server_status_page_and_its_auto_form(proxy_factory, http_backend):
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": "balancer://pool/"}], admin=admin_section(),
                          balancers={"pool": {"members": [{"url": backend.url, "route": "a"}]}})
    for _ in range(4):
        with proxy.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert recv_until_eof(sock).startswith(b"HTTP/1.1 200")
    workers = proxy.worker_pids()
    status, headers, page = get(admin_port(proxy), "/server-status?refresh=7")
    assert status == 200 and headers["content-type"].startswith("text/html")
    text = page.decode()
    assert '<meta http-equiv="refresh" content="7">' in text
    assert all(f"<td>{pid}</td>" in text for pid in workers) and backend.url in text
    status, headers, auto = get(admin_port(proxy), "/server-status?auto")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    fields = dict(line.split(": ", 1) for line in auto.decode().splitlines())
    assert fields["Total Accesses"] == "4" and fields["ParentServerConfigGeneration"] == "1"
    assert fields["Processes"] == "2" and len(fields["Scoreboard"]) == 2 and set(fields["Scoreboard"]) <= set("_W")
    lines = auto.decode().splitlines()
    assert sum(line.startswith("Worker: pid=") for line in lines) == 2
    member = next(line for line in lines if line.startswith("Member: "))
    assert f"url={backend.url}" in member and "requests=4" in member and "status=enabled" in member


@pytest.mark.parametrize("admin, message", [
    ('{listen: "127.0.0.1:%(data)d"}', "is also a data listener"),
    ('{listen: "127.0.0.1:%(free)d", allow: ["10.0.0.0/33"]}', "'10.0.0.0/33' is not an IP address or network"),
    ('{listen: "127.0.0.1:%(free)d", allow: []}', "admin.allow is empty"),
    ('{listen: "127.0.0.1:%(free)d", alow: ["10.0.0.0/8"]}', "unknown key 'alow' in admin (did you mean 'allow'?)"),
    ('{allow: ["10.0.0.0/8"]}', "admin is missing 'listen'"),
    ('{listen: "localhost"}', "admin.listen: listen address 'localhost' must be"),
])
def test_admin_section_errors_name_file_and_line(tmp_path, admin, message):
    data, free = free_port(), free_port()
    path = tmp_path / "mpm.yaml"
    path.write_text(f'listen: ["127.0.0.1:{data}"]\nroutes: [{{path: /, to: "http://127.0.0.1:9/"}}]\n'
                    f"admin: {admin % {'data': data, 'free': free}}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert any(line.startswith(f"{path}:3: ") and message in line for line in caught.value.errors), \
        caught.value.errors


def test_the_demo_page_links_to_the_status_page(monkeypatch):
    from bench import backends
    monkeypatch.delenv("MPM_DEMO_STATUS_URL", raising=False)
    assert b"/server-status" not in backends.demo_page()
    monkeypatch.setenv("MPM_DEMO_STATUS_URL", "http://127.0.0.1:9180/server-status")
    assert b'<a id="status" href="http://127.0.0.1:9180/server-status">' in backends.demo_page()
