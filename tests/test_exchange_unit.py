"""The HTTP path's parts without sockets (issue #12): the exchange's phase table, heads
parsed and rewritten, body framing, routing.  Everything here is pure computation on
bytes and objects; the behaviour over real sockets is tested in the other test_http_*
files."""

from __future__ import annotations

import types

import pytest

from conf import load_config
from conf.model import Limits
from worker import authority, exchange, http1
from worker.authority import valid_host
from worker.backend import Origins
from worker.clientcert import IdentityHead
from worker.framing import (
    CLOSE_FRAMING,
    NO_BODY,
    BadFraming,
    ChunkedFraming,
    CloseFraming,
    LengthFraming,
    RechunkedCloseFraming,
)
from worker.http1 import HttpError, parse_request, parse_response
from worker.rewrite import error_response, reason_phrase, request_head, response_head
from worker.routing import Router, origin_form, refused_target

LIMITS = Limits()
XFF = b"X-Forwarded-For: 10.0.0.9\r\n"
PROTO = b"X-Forwarded-Proto: http\r\n"
HOST = b"Host: backend:9001\r\n"


# == the phase table ============================================================================
def test_every_phase_is_reachable_from_routing_and_done_and_tunnel_are_terminal():
    seen, todo = {exchange.ROUTING}, [exchange.ROUTING]
    while todo:
        for nxt in exchange.NEXT[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(range(len(exchange.PHASES)))
    assert not exchange.NEXT[exchange.DONE] and not exchange.NEXT[exchange.TUNNEL]
    # every phase but the terminal ones can end the exchange (an abort is always possible)
    assert all(exchange.DONE in exchange.NEXT[p] for p in range(exchange.DONE))


def _bare_exchange():
    """An Exchange with just what `enter` reads (no sockets involved)."""
    loop = types.SimpleNamespace(now=100.0)
    worker = types.SimpleNamespace(timeouts=types.SimpleNamespace(connect=5.0, keepalive=7.0))
    client = types.SimpleNamespace(worker=worker, loop=loop, deadline=0.0, client_ip=b"127.0.0.1")
    return exchange.Exchange(client, None), client


def test_enter_sets_the_deadline_of_the_phase_and_refuses_what_is_not_a_transition():
    ex, client = _bare_exchange()
    ex.enter(exchange.CONNECTING)
    assert client.deadline == 105.0                       # timeouts.connect
    ex.route = types.SimpleNamespace(timeout=30.0)
    ex.enter(exchange.WAITING)
    assert client.deadline == 130.0                       # the route's ProxyTimeout
    with pytest.raises(AssertionError, match="WAITING -> ROUTING"):
        ex.enter(exchange.ROUTING)
    ex.enter(exchange.RELAYING)
    with pytest.raises(AssertionError, match="RELAYING -> TUNNEL"):
        ex.enter(exchange.TUNNEL)


# == request heads ==============================================================================
def test_request_head_fields_the_proxy_acts_on():
    raw = (b"POST /up?x=1 HTTP/1.1\r\nHost: Example.COM:8080\r\nContent-Length: 5\r\n"
           b"Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n")
    head = parse_request(raw, LIMITS)
    assert (head.method, head.target, head.version) == (b"POST", b"/up?x=1", "1.1")
    assert head.host == b"Example.COM:8080" and head.content_length == 5 and not head.chunked
    assert head.keep_alive and head.upgrade is None and head.has_body
    assert head.values(b"cookie") == [b"a=1", b"b=2"] and head.get(b"x-hop") == b"1"
    assert head.get(b"absent") is None


@pytest.mark.parametrize("raw, status", [
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b" GET / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400),
    (b"GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET / x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET /\r\nHost: a\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    (b"get / HTTP/1.1\r\nHost: a\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X: y\r\n" * 101 + b"\r\n", 431),
])
def test_malformed_request_heads_get_their_status(raw, status):
    with pytest.raises(HttpError) as caught:
        parse_request(raw, LIMITS)
    assert caught.value.status == status


# Heads after which llhttp is not between messages (in a body, after an upgrade or a close,
# or after an error), and heads after which it is.
_LEAVES_LLHTTP = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nProxy-Connection: close\r\n\r\n",      # llhttp reads it as Connection
    b"GET / HTTP/1.1\r\nHost: a\r\nProxy-Connection: keep-alive, Close\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
]


@pytest.mark.parametrize("first", _LEAVES_LLHTTP)
def test_whatever_state_a_head_leaves_llhttp_in_the_next_head_is_judged_alone(first):
    """parse_request uses a parser again only when its message ended between messages
    (worker.http1): after any head, a good head parses and a bad one is refused."""
    for second in (b"GET /next HTTP/1.1\r\nHost: b\r\n\r\n", b"GET /next HTTP/1.1\r\nHost: b\r\nX: a\x00b\r\n\r\n"):
        for _ in range(2):        # the second round starts from whatever the first left behind
            try:
                parse_request(first, LIMITS)
            except HttpError:
                pass
            if b"\x00" in second:
                with pytest.raises(HttpError) as caught:
                    parse_request(second, LIMITS)
                assert caught.value.status == 400
            else:
                assert parse_request(second, LIMITS).target == b"/next"


def test_a_good_head_is_not_refused_by_a_reused_parser_left_closed():
    """Should the parser parse_request keeps be left in a state not foreseen (here: closed by
    a head llhttp took for Connection: close), the next head is judged by a fresh one."""
    closed = http1.REQUEST_PARSER(http1.NO_CALLBACKS)
    closed.feed_data(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    http1._spare_request_parser = closed
    assert parse_request(b"GET /next HTTP/1.1\r\nHost: b\r\n\r\n", LIMITS).target == b"/next"
    http1._spare_request_parser = closed
    with pytest.raises(HttpError):
        parse_request(b"GET /next HTTP/1.1\r\nHost: b\r\nX: a\x00b\r\n\r\n", LIMITS)


def test_upgrade_needs_the_token_in_connection_and_http11():
    asked = parse_request(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
                          LIMITS)
    assert asked.upgrade == b"websocket"
    assert parse_request(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", LIMITS).upgrade is None
    assert parse_request(b"GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
                         LIMITS).upgrade is None
    with_body = parse_request(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                              b"Content-Length: 3\r\n\r\n", LIMITS)          # plain HTTP (it was a 400)
    assert with_body.upgrade is None and with_body.content_length == 3


@pytest.mark.parametrize("host, valid", [(b"example.com", True), (b"a.b:80", True), (b"[::1]:8080", True),
                                         (b"10.0.0.1", True), (b"", True), (b"a b", False), (b"t/evil", False),
                                         (b"a:b", False), (b"[::1", False)])
def test_host_values(host, valid):
    assert valid_host(host) is valid
    assert valid_host(host) is valid        # again: a remembered answer is the same answer


def test_remembered_hosts_are_bounded_and_the_check_goes_on_past_the_bound():
    for i in range(authority._VALID_HOSTS_MAX + 50):
        assert valid_host(b"h%d.example" % i)
    assert len(authority._VALID_HOSTS) == authority._VALID_HOSTS_MAX
    assert valid_host(b"past.the.bound:8080") and not valid_host(b"past the bound")
    assert b"past.the.bound:8080" not in authority._VALID_HOSTS


# == rewriting ==================================================================================
def test_request_head_drops_hop_by_hop_and_what_connection_names_and_sets_ours():
    head = parse_request(b"GET /a HTTP/1.1\r\nHost: front\r\nUser-Agent: ua\r\nConnection: keep-alive, X-Hop\r\n"
                         b"X-Hop: secret\r\nKeep-Alive: 5\r\nTE: trailers\r\nX-Forwarded-For: 1.2.3.4\r\n"
                         b"X-Forwarded-Proto: https\r\nAccept: */*\r\n\r\n", LIMITS)
    out = request_head(head, b"/b/a", HOST, XFF, PROTO, None)
    assert out == (b"GET /b/a HTTP/1.1\r\nHost: backend:9001\r\nUser-Agent: ua\r\nAccept: */*\r\n"
                   b"X-Forwarded-For: 1.2.3.4, 10.0.0.9\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: front\r\n\r\n")



def test_a_clients_x_ssl_client_fields_give_way_to_ours_unless_a_trusted_proxy_sent_them():
    """worker.clientcert: on a server with a client_ca listener only the proxy writes
    X-SSL-Client-*.  Among them one a Connection field also names (rewrite drops that one),
    and Transfer-Encoding spelt oddly (rewritten: the head is not sent as it came)."""
    raw = (b"POST /a HTTP/1.1\r\nHost: h\r\nX-SSL-Client-S-DN: CN=admin\r\nX-SSL-Clientele: kept\r\n"
           b"Connection: x-ssl-client-verify\r\nx-ssl-client-verify: SUCCESS\r\nHostname: kept\r\n"
           b"Transfer-Encoding: CHUNKED\r\nX-Ssl-Client-Cn: admin\r\n\r\n")
    head = parse_request(raw, LIMITS)
    ours = b"X-SSL-Client-Verify: SUCCESS\r\nX-SSL-Client-S-DN: CN=alice\r\n"
    kept = b"POST /a HTTP/1.1\r\nHost: backend:9001\r\nX-SSL-Clientele: kept\r\nHostname: kept\r\n" \
           b"Transfer-Encoding: chunked\r\n" + XFF + PROTO + b"X-Forwarded-Host: h\r\n"
    assert IdentityHead(ours)(head, b"/a", HOST, XFF, PROTO, None) == kept + ours + b"\r\n"
    assert IdentityHead(b"")(head, b"/a", HOST, XFF, PROTO, None) == kept + b"\r\n"   # no certificate
    trusted = request_head(head, b"/a", HOST, XFF, PROTO, None, trusted=True)
    assert b"X-SSL-Client-S-DN: CN=admin\r\n" in trusted and b"X-Ssl-Client-Cn: admin\r\n" in trusted

def test_request_head_for_an_upgrade_and_for_an_http10_client():
    head = parse_request(b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                         b"Sec-WebSocket-Key: k\r\n\r\n", LIMITS)
    out = request_head(head, b"/ws", HOST, XFF, PROTO, b"websocket")
    assert out.endswith(b"Sec-WebSocket-Key: k\r\n" + XFF + PROTO + b"X-Forwarded-Host: h\r\n"
                        b"Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    assert out.count(b"Upgrade: websocket") == 1
    old = parse_request(b"GET / HTTP/1.0\r\n\r\n", LIMITS)
    assert request_head(old, b"/", HOST, XFF, PROTO, None).startswith(    # (review 2026-12-03-http1 #4)
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nHost: backend:9001\r\n")


def test_response_head_as_it_came_when_nothing_needs_changing():
    resp = parse_response(b"HTTP/1.1 200 OK\r\nServer: s\r\nContent-Length: 3\r\n\r\n")
    assert response_head(resp, True, False, True, None) == b"HTTP/1.1 200 OK\r\nServer: s\r\nContent-Length: 3\r\n\r\n"
    assert response_head(resp, False, False, True, None, extra=b"Set-Cookie: r=a\r\n") == (
        b"HTTP/1.1 200 OK\r\nServer: s\r\nContent-Length: 3\r\nConnection: close\r\nSet-Cookie: r=a\r\n\r\n")


@pytest.mark.parametrize("raw, plain", [
    (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\n", True),
    (b"HTTP/1.1 204 No Content\r\n\r\n", True),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", True),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n", False),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\n", False),
    (b"HTTP/1.1 200 OK\r\nkeep-ALIVE: timeout=5\r\nContent-Length: 3\r\n\r\n", False),
    (b"HTTP/1.1 200 OK\r\nTrailer: x\r\nTransfer-Encoding: chunked\r\n\r\n", False),
    (b"HTTP/1.1 200 OK\r\nUpgrade: h2c\r\nContent-Length: 0\r\n\r\n", False),
])
def test_a_plain_response_head_is_what_rewriting_it_would_give(raw, plain):
    """response._relay sends a `plain` head to an HTTP/1.1 client as it came (keep-alive) or
    with `Connection: close` added, when there is nothing else of ours to add: that must be
    exactly what response_head would have built."""
    resp = parse_response(raw)
    assert resp.plain is plain
    if plain:
        assert response_head(resp, True, False, True, None) == raw
        assert response_head(resp, False, False, True, None) == raw[:-2] + b"Connection: close\r\n\r\n"
    else:
        assert response_head(resp, True, False, True, None) != raw


def test_response_head_rewrites():
    resp = parse_response(b"HTTP/1.0 302 Found\r\nLocation: http://b:9/x/y\r\nConnection: keep-alive\r\n"
                          b"Keep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\n\r\n")
    out = response_head(resp, True, True, False, (b"http://b:9/x/", b"http://front/app/"))
    assert out == b"HTTP/1.1 302 Found\r\nLocation: http://front/app/y\r\nConnection: keep-alive\r\n\r\n"
    switched = parse_response(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade, X-Hop\r\n"
                              b"X-Hop: 1\r\nSec-WebSocket-Accept: a\r\n\r\n")
    assert response_head(switched, True, False, True, None, upgrade=True) == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: a\r\nConnection: Upgrade\r\n\r\n")


def test_reason_phrases_come_from_the_standard_table():
    assert reason_phrase(503) == "Service Unavailable" and reason_phrase(431) == "Request Header Fields Too Large"
    assert error_response(503, "down").startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert reason_phrase(599) == "Unknown"


# == framing ====================================================================================
def test_length_framing_ends_exactly_and_says_what_may_be_spliced():
    framing = LengthFraming(10)
    # A read asks for one byte past the body: one there means something follows it.
    assert framing.opaque() == 10 and framing.wanted(4) == 4 and framing.wanted(64) == 11
    assert framing.feed(b"0123", 0, 4) == -1 and framing.opaque() == 6
    assert framing.feed(b"456789next", 0, 10) == 6 and framing.finished


def test_chunked_framing_split_at_every_byte():
    body = b"5;ext=1\r\nhello\r\n10\r\n" + b"x" * 16 + b"\r\n0\r\nX-Checksum: t\r\n\r\n"
    for cut in range(1, len(body)):
        framing = ChunkedFraming()
        assert framing.feed(body[:cut], 0, cut) == -1, cut
        assert framing.feed(body + b"NEXT", cut, len(body) + 4) == len(body), cut
        assert framing.data_bytes == 21 and framing.finished


def test_chunked_framing_de_chunks_and_counts_against_a_limit():
    framing = ChunkedFraming(decode=True)
    data = b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
    assert framing.feed(data, 0, len(data)) == len(data)
    assert framing.data_of(data) == b"abcdefg"
    assert framing.over(6) and not framing.over(7) and framing.reframes


@pytest.mark.parametrize("bad", [b"x\r\n", b"5\nhello\r\n", b"2\r\nabc\r\n", b"0\r\nno colon\r\n\r\n"])
def test_chunked_framing_refuses_bad_framing(bad):
    with pytest.raises(BadFraming):
        ChunkedFraming().feed(bad, 0, len(bad))


def test_close_and_no_body_framing():
    assert CloseFraming().feed(b"abc", 0, 3) == -1 and CloseFraming.close_delimited
    assert not CloseFraming.reframes and CloseFraming.last_chunk == b""
    assert NO_BODY.finished and NO_BODY.feed(b"abc", 1, 3) == 1
    head = parse_response(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert head.body_framing(b"GET", False) is NO_BODY
    assert parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n").body_framing(b"HEAD", False) is NO_BODY


def test_a_body_until_close_is_rechunked_for_an_http11_client_read_by_read():
    framing = RechunkedCloseFraming()
    assert framing.close_delimited and framing.reframes and not framing.finished
    data = b"HEAD\r\n\r\nhello, world"
    assert framing.feed(data, 8, len(data)) == -1
    assert framing.data_of(data) == b"c\r\nhello, world\r\n"
    assert framing.feed(memoryview(b"x" * 300), 0, 300) == -1
    assert framing.data_of(memoryview(b"x" * 300)) == b"12c\r\n" + b"x" * 300 + b"\r\n"
    assert framing.last_chunk == b"0\r\n\r\n"


@pytest.mark.parametrize("head, rechunked", [
    (b"HTTP/1.1 200 OK\r\n\r\n", True),
    (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n", True),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", False),   # a coding of its own: as it came
])
def test_which_bodies_until_close_are_rechunked(head, rechunked):
    response = parse_response(head)
    assert response.body_framing(b"GET", False, False) is CLOSE_FRAMING
    assert isinstance(response.body_framing(b"GET", False, True), RechunkedCloseFraming) is rechunked
    assert response.body_framing(b"HEAD", False, True) is NO_BODY


# == routing ====================================================================================
def _router(tmp_path, routes: str) -> Router:
    path = tmp_path / "r.yaml"
    path.write_text(f'listen: ["127.0.0.1:8000"]\nroutes:\n{routes}')
    config = load_config(str(path))
    return Router(config.routes, 300.0, Origins())


def test_routes_map_prefixes_and_templates_byte_for_byte(tmp_path):
    router = _router(tmp_path, '  - {path: /app/, to: "http://127.0.0.1:9001/x/"}\n'
                               '  - {match: "^/u/([a-z]+)/(.*)$", to: "http://127.0.0.1:9001/users/$1/p/$2"}\n'
                               '  - {path: /, when: {header: {Upgrade: websocket}}, to: "ws://127.0.0.1:9002/"}\n')
    head = parse_request(b"GET /app/a%2Fb?q HTTP/1.1\r\nHost: h\r\n\r\n", LIMITS)
    route, mapped = router.resolve(head.target, head)
    assert mapped == b"/x/a%2Fb?q" and route.origin.host_line == b"Host: 127.0.0.1:9001\r\n"
    head = parse_request(b"GET /u/ann/x/y HTTP/1.1\r\nHost: h\r\n\r\n", LIMITS)
    assert router.resolve(head.target, head)[1] == b"/users/ann/p/x/y"
    head = parse_request(b"GET /other HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\n\r\n", LIMITS)
    assert router.resolve(head.target, head)[1] == b"/other"
    head = parse_request(b"GET /other HTTP/1.1\r\nHost: h\r\n\r\n", LIMITS)
    assert router.resolve(head.target, head) == (None, None)


def test_upgrade_policy_any_and_none_apply(tmp_path):
    """conf builds ANY/NONE with .upper(): compared by value, they must still apply."""
    router = _router(tmp_path, '  - {path: /any/, to: "ws://127.0.0.1:9001/", upgrade: any}\n'
                               '  - {path: /none/, to: "ws://127.0.0.1:9001/", upgrade: none}\n'
                               '  - {path: /, to: "ws://127.0.0.1:9001/", upgrade: [websocket, h2c]}\n')
    any_route, none_route, listed = router.routes
    assert any_route.any_protocol and not any_route.always_upgrade
    assert none_route.any_protocol and none_route.always_upgrade
    asked = parse_request(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: IRC/6.9\r\n\r\n", LIMITS)
    plain = parse_request(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", LIMITS)
    assert any_route.upgrade_header(asked) == b"IRC/6.9" and any_route.upgrade_header(plain) is None
    assert none_route.upgrade_header(plain) == b"websocket" and none_route.upgrade_header(asked) == b"IRC/6.9"
    assert listed.upgrade_header(asked) is None
    h2c = parse_request(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n", LIMITS)
    assert listed.upgrade_header(h2c) == b"h2c"
    # Only what the route allows is forwarded: the backend cannot pick a protocol beside it.
    websocket_only = _router(tmp_path, '  - {path: /, to: "ws://127.0.0.1:9001/"}\n').routes[0]
    both = parse_request(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: WebSocket, h2c\r\n\r\n",
                         LIMITS)
    assert websocket_only.upgrade_header(both) == b"WebSocket"
    assert websocket_only.upgrade_header(h2c) is None


def test_targets_other_than_origin_form():
    assert origin_form(b"http://h/p?q") == b"/p?q" and origin_form(b"HTTPS://h") == b"/"
    assert origin_form(b"ftp://h/") is None
    assert refused_target(b"/a/../b") and refused_target(b"/a/%2E%2e/b") and refused_target(b"/.")
    assert refused_target(b"/a..b/c.d?x=/../") is None and refused_target(b"/%20") is None


def test_the_targets_a_router_remembers_are_bounded(tmp_path):
    """Router.remember keeps what `resolve` answered for a target only while targets alone decide
    routes, at most MEMO_MAX of them (a flood of distinct targets starts it over) and none longer
    than MEMO_TARGET_MAX: a client cannot grow a worker's memory by sending new targets."""
    from worker import routing
    router = _router(tmp_path, '  - {path: /a/, to: "http://127.0.0.1:9001/"}\n')
    for n in range(routing.MEMO_MAX + 5):
        router.remember(b"/a/%d" % n, router.resolve(b"/a/%d" % n, None))
    assert 0 < len(router.remembered) <= routing.MEMO_MAX
    assert router.remembered[b"/a/%d" % (routing.MEMO_MAX + 4)][1] == b"/%d" % (routing.MEMO_MAX + 4)
    long = b"/a/" + b"x" * routing.MEMO_TARGET_MAX
    router.remember(long, router.resolve(long, None))
    assert long not in router.remembered
    guarded = _router(tmp_path, '  - {path: /a/, when: {header: {Cookie: "beta"}}, to: "http://127.0.0.1:9001/"}\n')
    guarded.remember(b"/a/1", (None, None))
    assert not guarded.remembered      # a field decides too: never remembered
