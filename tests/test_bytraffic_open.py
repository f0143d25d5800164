"""bytraffic sees the bytes of a WebSocket while it is open (review 2026-12-03-h2lb #6).

Before, a member's bytes grew only when a tunnel closed: a member that had moved 8 MiB
through an open WebSocket looked idle, and the GETs after it alternated between the two
members.  Apache's bytraffic counts as the bytes move; mpm puts an open tunnel's bytes on its
member every `TUNNEL_BYTES_BEATS` heartbeats (5 s), and the rest when it closes or moves to a
new generation; the new generation counts only what moves after the hand-over (its counters
start over at a reload), so nothing is counted twice."""

from __future__ import annotations

import json
import time

import pytest
from balancer_util import KeepAlive, Member, members_section, ws_close, ws_open
from proxyproc import running_proxy
from support import wait_for
from wsutil import frame, read_frame

MESSAGE = b"x" * 65536
MESSAGES = 64               # 4 MiB each way
MOVED = 2 * MESSAGES * len(MESSAGE)


def member_bytes(proxy) -> dict:
    listing = proxy.mpmctl("balancer", "--json")
    assert listing.returncode == 0, listing.stderr
    (balancer,) = json.loads(listing.stdout)["balancers"]
    return {m["route"]: m["bytes"] for m in balancer["members"]}


@pytest.mark.timeout(60)
def test_an_open_websockets_bytes_steer_bytraffic_and_count_once(tmp_path):
    members = [Member(name) for name in ("a", "b")]
    routes = [{"path": "/", "to": "balancer://lb/"}]
    try:
        with running_proxy(tmp_path, routes, workers=1,
                           balancers={"lb": members_section(members, method="bytraffic")}) as proxy:
            sock, _, rest = ws_open(proxy, "/ws")
            try:
                busy = "a" if members[0].tunnels else "b"
                for _ in range(MESSAGES):
                    sock.sendall(frame(MESSAGE))
                    assert read_frame(sock, rest)[1] == MESSAGE
                wait_for(lambda: member_bytes(proxy)[busy] >= MOVED, 8, 0.25,
                         "the open tunnel's bytes on its member")
                client = KeepAlive(proxy)
                answered = [client.get("/")[2].decode() for _ in range(6)]
                client.close()
                assert answered == ["b" if busy == "a" else "a"] * 6
                reload = proxy.mpmctl("reload")              # the tunnel moves to the new generation
                assert reload.returncode == 0, reload.stderr
                time.sleep(1.5)
                sock.sendall(frame(MESSAGE))
                assert read_frame(sock, rest)[1] == MESSAGE
            finally:
                ws_close(sock)
            # a reload starts the counters over (shm/members.py carry_from): the new generation
            # counts what moved after the hand-over, not the predecessor's bytes once more
            after = 2 * len(MESSAGE)
            wait_for(lambda: member_bytes(proxy)[busy] >= after, 8, 0.25, "the tunnel's last bytes on its member")
            time.sleep(0.5)
            assert member_bytes(proxy)[busy] < after + 1024, "counted twice"
    finally:
        for member in members:
            member.close()
