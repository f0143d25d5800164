"""A new master takes the control paths when a predecessor that never renames them hands over.

A release before the hand-over by rename (no "control" in MPM_INHERIT) closes its control
socket when its successor serves, and then drains for up to graceful_timeout.  The new master
took the paths only at its exit: meanwhile `mpmctl status` said the pidfile's master "does not
answer", and `mpmctl stop`/`reload` signalled the draining master and reported success while
the new one served on (review 2026-12-04-versions r01).  Now the new master takes them once
the predecessor's workers have all stopped serving.

The test is that predecessor: it shares a scoreboard (this release's layout) with one "ready"
row of its own, holds the control socket, starts `python -m mpm start` as `mpmctl upgrade`
does, and hands over as such a release does: rows to "stopping", control socket closed and
left in place.  It stays alive (the new master's parent) throughout."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
from proxyproc import ROOT, Proxy
from support import wait_for

from mpm.pidfile import read_pid
from shm.scoreboard import Scoreboard

OLD_GENERATION = 3


def _new_master_ready(board: Scoreboard) -> bool:
    return any(row["generation"] > OLD_GENERATION and row["state"] == "ready" for row in board.live_rows())


@pytest.mark.timeout(90)
def test_the_control_paths_follow_a_hand_over_by_a_release_that_does_not_rename(tmp_path):
    proxy = Proxy(tmp_path, [{"path": "/", "to": "http://127.0.0.1:9/"}], workers=1)
    proxy.write_config()
    run = tmp_path / "run"
    run.mkdir()
    board = Scoreboard()
    old_row = board.claim(OLD_GENERATION, 0)
    board.row_for_child(old_row, os.getpid(), OLD_GENERATION, 0).publish("ready", 0, 0, 0, 0, 0)
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)     # the old master's
    control.bind(str(run / "mpm.sock"))
    control.listen(4)
    (run / "mpm.pid").write_text(f"{os.getpid()}\n")
    env = dict(os.environ, MPM_UPGRADE_FROM=str(os.getpid()),
               MPM_INHERIT=json.dumps({"scoreboard": board.fd, "generation": OLD_GENERATION}))
    master = subprocess.Popen([sys.executable, "-m", "mpm", "start", "-c", proxy.config_path], env=env, cwd=ROOT,
                              pass_fds=[board.fd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _new_master_ready(board), 30, 0.05, "the new master's worker")
        old_socket = os.stat(run / "mpm.sock").st_ino
        assert read_pid(str(run / "mpm.pid")) == os.getpid(), "taken while the old master still serves"
        assert os.stat(run / "mpm.sock").st_ino == old_socket
        # The hand-over, as that release makes it.
        board.row_for_child(old_row, os.getpid(), OLD_GENERATION, 0).publish("stopping", 0, 0, 0, 0, 0)
        control.close()
        wait_for(lambda: read_pid(str(run / "mpm.pid")) == master.pid, 10, 0.05, "the pidfile to name the new master")
        status = proxy.status()
        assert status is not None and status["master_pid"] == master.pid, status
        assert proxy.mpmctl("stop").returncode == 0
        assert master.wait(timeout=30) == 0
    finally:
        control.close()
        if master.poll() is None:
            os.kill(master.pid, signal.SIGKILL)
            master.wait(timeout=10)
        board.free(old_row)
