"""Who the client is behind two tiers of trusted proxies (review 2026-12-03-http1 #8).

A CDN and an internal balancer in front of mpm write "X-Forwarded-For: <client>, <balancer>".
With both tiers in `limits.trusted_proxies`, X-Forwarded-For is read right to left past the
trusted hops, as mod_remoteip and nginx's real_ip_recursive do: the first untrusted hop is the
client, so two clients behind the same balancer keep their own per-client limits, and the
access log names them."""

from __future__ import annotations

from httpclient import read_raw_response
from proxyproc import wait_access

LB = "127.0.0.9"          # the inner tier: trusted (127.0.0.0/8), as is the peer itself


def _get(proxy, path: str, forwarded_for: str) -> int:
    with proxy.connect() as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                     f"X-Forwarded-For: {forwarded_for}\r\n\r\n".encode())
        return read_raw_response(sock).status


def _logged_client(proxy, path: str) -> str:
    lines = wait_access(proxy, f'"GET {path} HTTP/1.1"')
    assert lines, f"no access line for {path}"
    return lines[0].split(" ", 1)[0]


def test_clients_behind_two_trusted_tiers_keep_their_own_identity(proxy_factory, http_backend):
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1,
                          limits={"trusted_proxies": ["127.0.0.0/8"],
                                  "per_client": {"requests": {"rate": 1, "burst": 3}}})
    statuses = [_get(proxy, f"/a{n}", f"203.0.113.5, {LB}") for n in range(4)]
    assert statuses == [200, 200, 200, 429]                 # the first client's burst is spent...
    assert _get(proxy, "/b", f"198.51.100.7,{LB}") == 200   # ...not the second one's
    assert _logged_client(proxy, "/a0") == "203.0.113.5" and _logged_client(proxy, "/b") == "198.51.100.7"
    # The hops left of the client's were written by the client: not read.
    assert _get(proxy, "/c", f"192.0.2.66, 198.51.100.8, {LB}") == 200
    assert _logged_client(proxy, "/c") == "198.51.100.8"
    # All hops trusted: the leftmost.  A hop that is no address stops the walk at its right.
    assert _get(proxy, "/d", f"127.0.0.7, {LB}") == 200 and _logged_client(proxy, "/d") == "127.0.0.7"
    assert _get(proxy, "/e", f"not-an-address, {LB}") == 200 and _logged_client(proxy, "/e") == LB
    # At most 8 hops are read: a longer trusted chain ends at the 8th from the right.
    chain = ", ".join(["198.51.100.9"] + [f"127.0.0.{n}" for n in range(20, 29)])
    assert _get(proxy, "/f", chain) == 200 and _logged_client(proxy, "/f") == "127.0.0.21"
    assert backend.header(0, "X-Forwarded-For") == [f"203.0.113.5, {LB}, 127.0.0.1"]   # sent on as it was
