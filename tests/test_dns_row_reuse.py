"""A balancer row from DNS that passes to a newcomer while an exchange on the member that left
is still under way (commit 1ff8b4e; review section 7).

A member that leaves DNS drains for `hold`, then its row is free and the next address DNS
gives takes it, even while an exchange on the old member is still open (a connect to an
address that drops SYNs waits for `timeouts.connect`).  When that connect timed out, the
failure was charged to the row, and so to the newcomer: 60 s in error state (`retry`), a
failure counted, and an error-log line naming the newcomer's address.

Real processes, as in test_dns_departures.py: a real master and its worker
(proxyproc.Proxy), dnsmasq on a free loopback port (the `dns_server` fixture), real members
(balancer_util.Member) on 127.0.0.3 and 127.0.0.4, and on 127.0.0.2 a black hole: a
listener whose accept queue is full, so the kernel drops the proxy's SYNs.  The helpers come
from test_balancer_dns.py.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
from balancer_util import KeepAlive, Member
from support import wait_for
from test_balancer_dns import ROUTES, discovering, members

# timeouts.connect: how long the exchange on the departed member waits, and so the window in which
# its row must pass to the newcomer (hold, then a DNS round).  3 s left too little of it in a CI
# run of two test files at once on a loaded machine; the test's own length grows with it.
CONNECT_TIMEOUT = 6.0
HOLD = 0.5                      # discover.hold: how long the departed member keeps its row
INTERVAL = 0.2                  # discover.interval: a DNS round every housekeeping tick or so


@pytest.fixture
def black_hole():
    """A listener on 127.0.0.2 whose accept queue is full (listen(0), filled by connections
    nobody accepts): further SYNs are dropped, a connect to it waits until its own timeout.
    `black_hole(port)` makes it; closed with its fillers at teardown."""
    made: list[socket.socket] = []

    def make(port: int) -> str:
        hole = socket.socket()
        made.append(hole)
        hole.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        hole.bind(("127.0.0.2", port))
        hole.listen(0)
        for _ in range(3):
            filler = socket.socket()
            made.append(filler)
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.2", port))
        time.sleep(0.2)                   # the fillers' handshakes fill the queue
        probe = socket.socket()
        made.append(probe)
        probe.settimeout(0.5)
        with pytest.raises(TimeoutError):  # the precondition: a connect to it hangs
            probe.connect(("127.0.0.2", port))
        return f"http://127.0.0.2:{port}"
    yield make
    for sock in made:
        sock.close()


def test_a_newcomer_that_takes_a_departed_members_row_is_not_blamed_for_its_connect_timeout(
        proxy_factory, dns_server, black_hole):
    """An operator relies on a member that DNS just named taking traffic as soon as it has a
    row: when it takes the row of a member that left DNS (past `hold`) while a request to that
    member still waits in connect, the connect's timeout is that member's failure, not the
    newcomer's.  The newcomer is not put in error state for `retry` (60 s), its failure count
    stays 0, and the error log does not name its address as failed.  Before 1ff8b4e the
    failure was recorded against the row: the newcomer, which never had a request, got 60 s
    in error state and a log line saying its connect timed out."""
    staying = Member("Z", host="127.0.0.4")
    newcomer = Member("Y", host="127.0.0.3", port=staying.port)
    answers: list[tuple] = []
    try:
        departed = black_hole(staying.port)
        dns_server.records({"app.test": ["127.0.0.2", staying.host]})
        proxy = proxy_factory(ROUTES, workers=1, timeouts={"connect": CONNECT_TIMEOUT},
                              balancers=discovering(dns_server, dns="app.test", type="A", port=staying.port,
                                                    slots=2, hold=HOLD, interval=INTERVAL))
        wait_for(lambda: set(members(proxy)) == {departed, staying.url}, 10, 0.05, "the two members from DNS")

        def client() -> None:
            try:
                status, _, body = KeepAlive(proxy, timeout=CONNECT_TIMEOUT + 7).get("/")
                answers.append((status, body.decode()))
            except (OSError, ConnectionError) as exc:
                answers.append(("failed", repr(exc)))

        clients = [threading.Thread(target=client, daemon=True) for _ in range(2)]
        for thread in clients:          # byrequests: one of the two goes to the black hole
            thread.start()
        wait_for(lambda: members(proxy).get(departed, {}).get("busy") == 1, 3, 0.05,
                 "a request waiting in connect to the black hole")
        started = time.monotonic()

        dns_server.records({"app.test": [newcomer.host, staying.host]})
        def newcomer_listed() -> dict | None:
            listed = members(proxy)
            return listed if newcomer.url in listed else None

        listed = wait_for(newcomer_listed, CONNECT_TIMEOUT - 1, 0.05, "the newcomer to take the departed member's row")
        # The row changed hands while the exchange on the departed member was under way.
        assert time.monotonic() - started < CONNECT_TIMEOUT - 0.5, "the connect ended before the row changed hands"
        assert departed not in listed and listed[newcomer.url]["busy"] == 1, listed

        for thread in clients:
            thread.join(CONNECT_TIMEOUT + 8)
        assert not any(thread.is_alive() for thread in clients), "a client still waits"
        assert answers == [(200, "Z")] * 2, answers      # the one that waited failed over to Z
        wait_for(lambda: "connect timed out" in proxy.error_text(), 3, 0.05, "the departed member's connect timeout")

        state = members(proxy)[newcomer.url]
        assert state["state"] != "error" and state["failures"] == 0, (
            f"the newcomer, which had no request, was charged with the departed member's connect timeout: "
            f"{ {k: state.get(k) for k in ('status', 'state', 'error_for', 'failures')} }")
        blamed = [line for line in proxy.error_text().splitlines()
                  if f"{newcomer.host}:{newcomer.port}" in line and ("error state" in line or "timed out" in line)]
        assert not blamed, blamed
    finally:
        newcomer.close()
        staying.close()
