"""`mpmctl reopen` against a master of a release before it (review 2026-12-04-today #4): such a
master answers "unknown command", which was reported as "logs reopened"; and when its socket
did not answer, mpmctl sent SIGUSR2, whose default action killed that master and its workers.

The test plays that master as the upgrade tests play old releases: a process the pidfile
names (titled as a master, and killed by SIGUSR2 as such a master was) and a control socket
that answers as a406ab1's did, or does not answer."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading

import pytest
from proxyproc import Proxy
from support import wait_for

from mpm.pidfile import pid_alive, read_pid


@pytest.fixture
def old_master(tmp_path):
    proxy = Proxy(tmp_path, [{"path": "/", "to": "http://127.0.0.1:9/"}], workers=1)
    proxy.write_config()
    run = tmp_path / "run"
    run.mkdir()
    stand_in = subprocess.Popen([sys.executable, "-c", "import setproctitle, time; "
                                 "setproctitle.setproctitle('mpm: master (a release before reopen)'); time.sleep(60)"])
    wait_for(lambda: pid_alive(stand_in.pid), 10, 0.05, "the stand-in's title")
    (run / "mpm.pid").write_text(f"{stand_in.pid}\n")
    yield proxy, run
    stand_in.kill()
    stand_in.wait()


def _answer_as_an_old_release(server: socket.socket) -> None:
    conn, _ = server.accept()
    with conn:
        request = json.loads(conn.makefile().readline())
        conn.sendall(json.dumps({"ok": False, "errors": [f"unknown command {request['cmd']!r}"]}).encode() + b"\n")


@pytest.mark.timeout(30)
def test_an_unknown_command_is_said_not_taken_for_success(old_master):
    proxy, run = old_master
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(run / "mpm.sock"))
    server.listen(4)
    answering = threading.Thread(target=_answer_as_an_old_release, args=(server,))
    answering.start()
    try:
        done = proxy.mpmctl("reopen", timeout=20)
    finally:
        answering.join(10)
        server.close()
    assert done.returncode == 1 and "unknown command 'reopen'" in done.stderr, (done.stdout, done.stderr)
    assert "logs reopened" not in done.stdout


@pytest.mark.timeout(30)
def test_a_master_that_does_not_answer_gets_no_signal(old_master):
    proxy, run = old_master
    stale = socket.socket(socket.AF_UNIX)       # a socket file nobody listens on: connect refused
    stale.bind(str(run / "mpm.sock"))
    stale.close()
    pid = read_pid(str(run / "mpm.pid"))
    done = proxy.mpmctl("reopen", timeout=20)
    assert done.returncode == 1 and f"kill -USR2 {pid}" in done.stderr, (done.stdout, done.stderr)
    assert pid_alive(pid), "the master was signalled (SIGUSR2 kills one of a release before reopen)"
