"""A closed HTTP/2 connection's memory is freed when it closes, not when the cyclic GC runs.

Two reference cycles kept every closed connection for the cyclic GC: h2's machine keeps its
frame handlers as bound methods in a dict of its own, and a stream is its own endpoint
(`ep = self`) while it holds its connection (and so the machine, with its HPACK tables).
The worker runs here with the GC off (gc.disable() in a `sitecustomize.py` on PYTHONPATH,
in forked workers only), which also counts the h2 machines and our H2Connection objects
still alive (weak references) into a file each time a connection is made: after 30
connections opened, used and closed, the 31st finds no more than itself and a straggler
alive (before the fix: all 31, about 19 KiB of RSS each)."""

from __future__ import annotations

import time

import pytest
from h2client import H2Client
from rawbackend import RawBackend
from support import wait_for

SITECUSTOMIZE = '''
import gc
import os
import weakref


def _arm():
    import worker.h2.connection as connection

    gc.disable()
    machines, conns = weakref.WeakSet(), weakref.WeakSet()
    new_machine, init = connection.new_machine, connection.H2Connection.__init__

    def counted_machine(*args):
        machine = new_machine(*args)
        machines.add(machine)
        return machine

    def counted_init(self, *args, **kwargs):
        conns.add(self)
        init(self, *args, **kwargs)
        with open(os.environ["H2_COUNTS"], "a") as f:
            f.write(f"{len(machines)} {len(conns)}\\n")

    connection.new_machine = counted_machine
    connection.H2Connection.__init__ = counted_init


os.register_at_fork(after_in_child=_arm)
'''
CONNECTIONS = 30


@pytest.mark.timeout(30)
def test_closed_h2_connections_are_freed_without_the_cyclic_gc(proxy_factory, tmp_path):
    (tmp_path / "inject").mkdir()
    (tmp_path / "inject" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    counts = tmp_path / "counts"
    backend = RawBackend()
    try:
        proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], start=False, workers=1,
                              environ={"PYTHONPATH": str(tmp_path / "inject"), "H2_COUNTS": str(counts)})
        proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"}]
        proxy.start()
        for _ in range(CONNECTIONS):
            client = H2Client(proxy.port)
            assert client.get("/x").status == 200
            client.close()
        time.sleep(0.3)        # the last ones' EOFs are read and their connections closed
        last = H2Client(proxy.port)
        assert last.get("/x").status == 200
        lines = wait_for(lambda: counts.exists() and len(counts.read_text().split("\n")) > CONNECTIONS
                         and counts.read_text().split("\n"), 3, 0.05, "the counts")
        machines, conns = map(int, lines[CONNECTIONS].split())
        last.close()
        assert conns <= 2, f"{conns} H2Connection objects alive out of {CONNECTIONS + 1}"
        assert machines <= 2, f"{machines} h2 machines alive out of {CONNECTIONS + 1}"
    finally:
        backend.close()
