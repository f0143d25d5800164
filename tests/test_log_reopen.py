"""Log rotation without a reload (review 2026-12-04-logs #3): `mpmctl reopen` and SIGUSR2 make
the master and every worker open their log paths afresh, as nginx's USR1 does.  Before, only a
reload reopened them: a configuration broken at rotation time refused it and the lines went on
into the renamed file, and every rotation was a new generation (HTTP/2 clients got GOAWAY).

Real masters and workers; the client sends keep-alive requests throughout."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import pytest
from proxyproc import Proxy
from rawbackend import RawBackend
from support import wait_for


@pytest.fixture
def raw_backend():
    backend = RawBackend()
    yield backend
    backend.close()


class Traffic:
    """Keep-alive requests one after another on one connection, until stopped."""

    def __init__(self, port: int):
        self.port, self.answered, self.stop = port, 0, threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            while not self.stop.is_set():
                sock.sendall(b"GET /rotated/%d HTTP/1.1\r\nHost: t\r\n\r\n" % self.answered)
                data = b""
                while b"raw:/rotated/%d" % self.answered not in data:
                    more = sock.recv(65536)
                    assert more, "the connection closed"
                    data += more
                self.answered += 1
                time.sleep(0.002)

    def end(self) -> int:
        self.stop.set()
        self.thread.join(10)
        return self.answered


def _target(pid: int, fd: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except FileNotFoundError:
        return ""           # closed meanwhile


def _lines(path: str) -> list[str]:
    with open(path) as f:
        return [line for line in f if "/rotated/" in line]


@pytest.mark.timeout(60)
def test_reopen_lets_the_rotated_files_go_without_a_new_generation(tmp_path, raw_backend):
    proxy = Proxy(tmp_path / "p", [{"path": "/", "to": raw_backend.url + "/"}], workers=2)
    proxy.start()
    try:
        workers = sorted(proxy.worker_pids())
        traffic = Traffic(proxy.port)
        wait_for(lambda: traffic.answered > 50, 10, 0.02, "requests before the rotation")
        os.rename(proxy.access_log, proxy.access_log + ".1")
        os.rename(proxy.error_log, proxy.error_log + ".1")
        with open(proxy.config_path, "a") as f:
            f.write("timeouts: {proxy: -1}\n")          # being edited: a reload would be refused
        assert proxy.mpmctl("reload").returncode == 1, "the edited file should be refused by a reload"
        done = proxy.mpmctl("reopen")
        assert done.returncode == 0 and "logs reopened (2 workers told)" in done.stdout, done.stdout + done.stderr
        wait_for(lambda: os.path.exists(proxy.access_log) and _lines(proxy.access_log), 5, 0.05,
                 "lines in the new access.log")
        answered = traffic.end()
        assert sorted(proxy.worker_pids()) == workers, "a new generation: the reopen should touch no worker"
        old = _lines(proxy.access_log + ".1")
        new = wait_for(lambda: (found := _lines(proxy.access_log)) and len(found) + len(old) >= answered and found,
                       5, 0.05, "every line in one of the files")
        assert len(old) + len(new) == answered, (len(old), len(new), answered)
        assert "logs reopened (2 workers told)" in open(proxy.error_log).read()
        # The watchdog's stack dump goes to the new error log, not to the closed descriptor's number.
        os.kill(workers[0], signal.SIGUSR2)
        wait_for(lambda: "most recent call first" in open(proxy.error_log).read(), 5, 0.05, "the stack dump")
        assert "most recent call first" not in open(proxy.error_log + ".1").read()
        # Nothing holds the rotated files: a worker kept the master's descriptor of the error log
        # from its fork, and with it a deleted file's space (review 2026-12-04-today #5).
        for pid in workers:
            held = [_target(pid, fd) for fd in os.listdir(f"/proc/{pid}/fd")]
            assert not [path for path in held if ".log.1" in path], (pid, held)
    finally:
        proxy.stop()


@pytest.mark.timeout(60)
def test_sigusr2_reopens_and_a_path_that_will_not_open_keeps_the_old_file(tmp_path, raw_backend):
    proxy = Proxy(tmp_path / "p", [{"path": "/", "to": raw_backend.url + "/"}], workers=1)
    proxy.start()
    try:
        traffic = Traffic(proxy.port)
        wait_for(lambda: traffic.answered > 20, 10, 0.02, "requests")
        os.rename(proxy.access_log, proxy.access_log + ".1")
        os.mkdir(proxy.access_log)                           # the path will not open as a file (EISDIR)
        os.kill(proxy.proc.pid, signal.SIGUSR2)
        wait_for(lambda: "cannot reopen log" in proxy.stderr_text(), 5, 0.05, "the refusal on stderr")
        before = len(_lines(proxy.access_log + ".1"))
        wait_for(lambda: len(_lines(proxy.access_log + ".1")) > before + 10, 5, 0.05,
                 "lines still going to the file it had")
        os.rmdir(proxy.access_log)
        os.kill(proxy.proc.pid, signal.SIGUSR2)
        wait_for(lambda: os.path.exists(proxy.access_log) and _lines(proxy.access_log), 5, 0.05,
                 "lines in the new access.log")
        answered = traffic.end()
        wait_for(lambda: len(_lines(proxy.access_log)) + len(_lines(proxy.access_log + ".1")) == answered, 5, 0.05,
                 "every line in one of the files")
    finally:
        proxy.stop()
