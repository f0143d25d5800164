"""An upgrade to a release before the hand-over by rename (a rollback) keeps the new master's
control paths.

Such a release's new master writes the pidfile and binds the control socket at its start.
At the hand-over our old master then (1) refused to write a pidfile that already named the new
master (AlreadyRunning: neither us nor MPM_UPGRADE_FROM), which skipped closing our control
server, and (2) at exit unlinked the socket path, the new master's file by then: the new master
had no control socket for its whole life (review 2026-12-04-versions r03).  Both halves are
checked here on real files, sockets and processes; either alone prevented the loss."""

from __future__ import annotations

import os
import selectors
import socket
import subprocess
import sys
import time

from mpm.control import ControlServer
from mpm.pidfile import pid_alive, read_pid, write_pidfile


def test_closing_leaves_a_socket_file_that_is_no_longer_ours(tmp_path):
    path = str(tmp_path / "run" / "mpm.sock")
    selector = selectors.DefaultSelector()
    ours = ControlServer(path, selector, handler=lambda request: {})
    theirs = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        os.unlink(path)                 # the new master takes the path: a file of its own
        theirs.bind(path)
        theirs.listen(1)
        identity = os.stat(path).st_ino
        ours.close()                    # as Master._cleanup does at exit
        assert os.path.exists(path) and os.stat(path).st_ino == identity, "the new master's socket was removed"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(path)        # still answers there
    finally:
        theirs.close()
        selector.close()


def test_closing_removes_our_own_socket_file(tmp_path):
    path = str(tmp_path / "run" / "mpm.sock")
    selector = selectors.DefaultSelector()
    ControlServer(path, selector, handler=lambda request: {}).close()
    selector.close()
    assert not os.path.exists(path)


def test_the_pidfile_may_already_name_the_master_it_is_handed_to(tmp_path):
    path = str(tmp_path / "run" / "mpm.pid")
    # A live process that pid_alive takes for mpm (its command line says `-m mpm`).
    successor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "-m", "mpm"])
    try:
        assert _wait_alive(successor.pid)
        write_pidfile(path, owner=successor.pid)     # what that release wrote at its start
        write_pidfile(path, owner=successor.pid)     # our hand-over: the same name, no AlreadyRunning
        assert read_pid(path) == successor.pid
    finally:
        successor.kill()
        successor.wait(timeout=10)


def _wait_alive(pid: int) -> bool:
    for _ in range(200):
        if pid_alive(pid):
            return True
        time.sleep(0.01)
    return False
