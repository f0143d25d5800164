"""A new master started by a release it cannot follow refuses at once, before it listens.

`mpmctl upgrade` from a release whose scoreboard this one cannot read (another layout), and
that judges its successor ready only by the successor's rows in that scoreboard (no `ready_fd`
in MPM_INHERIT: releases before 7ecc7c7), could never see this master serve.  The new master
started a table of its own and workers that accepted on the inherited sockets; 30 s later the
old master gave up and stopped it, cutting 4-6 of 8 WebSockets opened meanwhile (review
2026-12-04-versions r06).  Here the test is that old master: it starts `python -m mpm start`
as such a release's `mpmctl upgrade` does, with a scoreboard of another size and no ready_fd."""

from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys

import pytest
from proxyproc import ROOT, Proxy


@pytest.mark.timeout(60)
def test_a_master_that_cannot_read_the_old_table_exits_before_serving(tmp_path):
    proxy = Proxy(tmp_path, [{"path": "/", "to": "http://127.0.0.1:9/"}], workers=1)
    proxy.write_config()
    old_table = os.memfd_create("old-scoreboard")          # a layout this release cannot read
    os.ftruncate(old_table, mmap.PAGESIZE)
    inherit = {"scoreboard": old_table, "generation": 3}    # no ready_fd, no listeners
    env = dict(os.environ, MPM_UPGRADE_FROM=str(os.getpid()), MPM_INHERIT=json.dumps(inherit))
    master = subprocess.Popen([sys.executable, "-m", "mpm", "start", "-c", proxy.config_path], env=env, cwd=ROOT,
                              pass_fds=[old_table], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = master.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        master.kill()
        master.communicate(timeout=10)
        pytest.fail("the new master went on serving behind an old master that cannot see it")
    finally:
        os.close(old_table)
    assert master.returncode != 0
    assert "cannot take over from master" in stderr and "scoreboard" in stderr, stderr
    assert "cannot take over from master" in proxy.error_text()
