"""worker/_lane_count.c's `Lane.count_at` and `lane_count` write inside the metrics row only
(review 2026-12-06-count: a base near PY_SSIZE_T_MAX, a row installed after the cells were
checked, a value that is not a tuple).

Each case runs in a child interpreter (an out-of-bounds write may crash it): a Lane on two
socketpairs, driven by hand through one exchange, counting into a row of the metrics layout that
sits inside a larger buffer, so that a write outside the row shows in the padding around it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from support import ROOT

pytestmark = pytest.mark.timeout(60)

PRELUDE = textwrap.dedent('''
    import select, socket, sys
    import worker.lane                      # the response reader
    from worker import _lane
    from shm.metrics import BUCKETS, CODE_CLASSES, DURATION_BOUNDS, ROW_FLOATS, ROW_INTS
    from worker.metrics import _RECEIVED, _SENT

    PAD = 200
    KEPT = {}

    def row(ints=ROW_INTS):
        counts_buf, seconds_buf = bytearray(8 * (PAD + ints + PAD)), bytearray(8 * (PAD + ROW_FLOATS + PAD))
        counts = memoryview(counts_buf).cast("q")[PAD:PAD + ints]
        seconds = memoryview(seconds_buf).cast("d")[PAD:PAD + ROW_FLOATS]
        _lane.install_counts(counts, seconds, DURATION_BOUNDS, BUCKETS, len(CODE_CLASSES), _RECEIVED, _SENT)
        return counts_buf, seconds_buf, ints

    def outside(buffers):
        counts_buf, seconds_buf, ints = buffers
        q, d = memoryview(counts_buf).cast("q"), memoryview(seconds_buf).cast("d")
        return ([i - PAD for i in range(len(q)) if q[i] and not PAD <= i < PAD + ints]
                + [i - PAD for i in range(len(d)) if d[i] and not PAD <= i < PAD + ROW_FLOATS])

    class Owner:
        def lane_request(self, raw):
            return raw
        def lane_done(self, *args):
            print("done", args[-1])
        def lane_back(self, *args):
            print("back", args[0])

    def lane():
        client, client_peer = socket.socketpair()
        backend, backend_peer = socket.socketpair()
        client.setblocking(False)
        backend.setblocking(False)
        epoll = select.epoll()
        one = _lane.Lane(epoll.fileno(), client.fileno(), backend.fileno(), Owner(), 16384, 16384)
        KEPT[id(one)] = (client, client_peer, backend, backend_peer, epoll)
        return one

    def exchange(one):
        client, client_peer, backend, backend_peer, _ = KEPT[id(one)]
        client_peer.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
        one.on_client(1)
        backend_peer.recv(1000)
        backend_peer.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
        one.on_backend(1)
''')


def _run(body: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(body)], capture_output=True, text=True,
                          cwd=ROOT, timeout=30)


def test_a_legal_count_at_writes_inside_the_row():
    """The reference: a route's own cells, written inside the row only."""
    result = _run('''
        from worker.metrics import _cells
        buffers = row()
        one = lane()
        one.count_at = _cells(5)
        exchange(one)
        print("outside", outside(buffers))
    ''')
    assert result.returncode == 0, result.stderr
    assert "done 1" in result.stdout and "outside []" in result.stdout, result.stdout


def test_count_at_refuses_a_base_whose_cells_overflow():
    """A base near PY_SSIZE_T_MAX: `base + last` would wrap, and the exchange write before the row
    (here into the padding; in a worker, into whatever precedes its row in the shared table)."""
    result = _run('''
        buffers = row()
        one = lane()
        try:
            one.count_at = (sys.maxsize - 105, 1)
        except ValueError:
            print("refused")
            sys.exit(0)
        print("accepted", one.count_at)
        exchange(one)
        print("outside", outside(buffers))
    ''')
    assert result.returncode == 0, result.stderr
    assert "refused" in result.stdout, result.stdout


def test_count_at_stays_inside_a_row_installed_after_it():
    """`count_at` is checked against the row installed when it is set; a row installed since
    (each Worker built in one process installs its own) is not counted in with those cells: the
    exchange is left to Python."""
    result = _run('''
        from worker.metrics import _cells
        big = row(ROW_INTS + 400)
        one = lane()
        one.count_at = (ROW_INTS + 100, 1)      # inside the first row
        small = row()                           # a second Worker's
        exchange(one)
        print("outside", outside(small))
    ''')
    assert result.returncode == 0, result.stderr
    assert "outside []" in result.stdout and "done 0" in result.stdout, result.stdout


def test_count_at_of_the_wrong_type_is_a_type_error():
    result = _run('''
        buffers = row()
        one = lane()
        try:
            one.count_at = [1, 2]
        except Exception as exc:
            print(type(exc).__name__)
    ''')
    assert result.stdout.strip() == "TypeError", result.stdout
