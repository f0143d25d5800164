"""The PROXY protocol (issue #15, part 2): required and read on `proxy_protocol: true`
listeners, before TLS or HTTP; the address it carries is the client's in logs,
X-Forwarded-For and limits; sent to backends with `proxy_protocol: v1|v2`.  HAProxy plays
the real sender (`send-proxy-v2`, `send-proxy`) and the real receiver (`accept-proxy`)."""

from __future__ import annotations

import json
import socket
import ssl
import struct
import time

import pytest
import trustme
from haproxy_util import HAProxy
from httpclient import read_raw_response
from proxyproc import wait_access
from rawsock import recv_until_close
from support import free_port, wait_for

from worker.proxyproto import V2_MAX, V2_SIGNATURE, BadHeader, header, parse


# == the header, both ways (no sockets) =========================================================
@pytest.mark.parametrize("data, expected", [
    (b"PROXY TCP4 192.0.2.1 198.51.100.2 5555 80\r\n", (b"192.0.2.1", 5555, b"198.51.100.2", 80)),
    (b"PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n", (b"2001:db8::1", 1, b"2001:db8::2", 65535)),
    (b"PROXY UNKNOWN\r\n", None),
    (b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", None),
])
def test_v1_headers_parse_whole_and_wait_when_cut(data, expected):
    assert parse(data + b"GET / HTTP/1.1\r\n") == (len(data), expected)
    for cut in range(1, len(data)):
        assert parse(data[:cut]) == (0, None)


@pytest.mark.parametrize("data", [
    b"PROXY TCP4 192.0.2.1 198.51.100.2 5555\r\n",            # a port missing
    b"PROXY TCP4 192.0.2.1 198.51.100.2 5555 65536\r\n",      # port out of range
    b"PROXY TCP4 192.0.2.1 198.51.100.2 05555 80\r\n",        # leading zero
    b"PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n",           # family mismatch
    b"PROXY TCP4 192.0.2.300 198.51.100.2 1 2\r\n",
    b"PROXY TCP5 192.0.2.1 198.51.100.2 1 2\r\n",
    b"PROXY  TCP4 192.0.2.1 198.51.100.2 1 2\r\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n",               # bare LF
    b"PROXY " + b"x" * 120,                                   # no CRLF within 107 bytes
    b"GET / HTTP/1.1\r\nHost: t\r\n\r\n",                     # no header at all
    b"PRoXY TCP4",
    b"\r\n\r\n\x00\r\nQUIT\x0b",                              # a v2 signature gone wrong
])
def test_malformed_headers_are_refused(data):
    with pytest.raises(BadHeader):
        parse(data)


def test_v2_round_trips_and_waits_when_cut():
    for src, dst in ((b"192.0.2.1", b"198.51.100.2"), (b"2001:db8::1", b"2001:db8::2")):
        data = header(2, src, 1234, dst, 443)
        assert parse(data + b"\x16\x03\x01") == (len(data), (src, 1234, dst, 443))
        for cut in range(1, len(data)):
            assert parse(data[:cut]) == (0, None)
    # An IPv4 client on an IPv6 listener: both written IPv6 (v4-mapped), as the spec wants one family.
    mixed = header(2, b"192.0.2.1", 1, b"2001:db8::2", 2)
    assert parse(mixed)[1] == (b"::ffff:192.0.2.1", 1, b"2001:db8::2", 2)
    assert header(1, b"192.0.2.1", 1, b"198.51.100.2", 2) == b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r\n"


def test_v2_local_tlvs_and_bounds():
    local = V2_SIGNATURE + b"\x20\x00\x00\x00"                  # LOCAL: the balancer's own check
    assert parse(local) == (16, None)
    addresses = struct.pack("!4s4sHH", socket.inet_aton("192.0.2.7"), socket.inet_aton("192.0.2.8"), 7, 8)
    tlv = b"\x05\x00\x04abcd"                                    # PP2_TYPE_UNIQUE_ID, skipped
    with_tlv = V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", len(addresses + tlv)) + addresses + tlv
    assert parse(with_tlv) == (len(with_tlv), (b"192.0.2.7", 7, b"192.0.2.8", 8))
    too_big = V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", V2_MAX)
    with pytest.raises(BadHeader):
        parse(too_big)
    with pytest.raises(BadHeader):
        parse(V2_SIGNATURE + b"\x31\x11\x00\x0c" + addresses)    # version 3
    with pytest.raises(BadHeader):
        parse(V2_SIGNATURE + b"\x21\x11\x00\x04" + addresses[:4])    # shorter than its addresses


# == a listener that requires it ==================================================================
@pytest.fixture
def pp_proxy(proxy_factory, http_backend):
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], start=False, workers=1,
                          timeouts={"client_header": 1},
                          limits={"per_client": {"requests": {"rate": 0.5, "burst": 1}}})
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "proxy_protocol": True}]
    proxy.start()
    proxy.backend = backend
    return proxy


def _through(proxy, preface: bytes, path: str, pieces: bool = False) -> int | None:
    with proxy.connect() as sock:
        if pieces:
            for byte in preface:
                sock.sendall(bytes([byte]))
                time.sleep(0.002)
        else:
            sock.sendall(preface)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        try:
            return read_raw_response(sock).status
        except EOFError:
            return None


def test_the_carried_address_is_the_client_everywhere(pp_proxy):
    backend = pp_proxy.backend
    assert _through(pp_proxy, b"PROXY TCP4 192.0.2.10 127.0.0.1 40000 80\r\n", "/v1", pieces=True) == 200
    assert _through(pp_proxy, header(2, b"2001:db8::10", 40001, b"::1", 80), "/v2") == 200
    assert backend.header(0, "X-Forwarded-For") == ["192.0.2.10"]
    assert backend.header(1, "X-Forwarded-For") == ["2001:db8::10"]
    assert wait_access(pp_proxy, "GET /v1 ")[0].startswith("192.0.2.10 ")
    assert wait_access(pp_proxy, "GET /v2 ")[0].startswith("2001:db8::10 ")
    # The limits count the carried address: the same one again is over its rate, another is not.
    assert _through(pp_proxy, b"PROXY TCP4 192.0.2.10 127.0.0.1 40002 80\r\n", "/again") == 429
    assert _through(pp_proxy, b"PROXY TCP4 192.0.2.11 127.0.0.1 40003 80\r\n", "/other") == 200
    # LOCAL (a balancer's health check): the peer is the client.
    assert _through(pp_proxy, V2_SIGNATURE + b"\x20\x00\x00\x00", "/local") == 200
    assert backend.header(len(backend.requests) - 1, "X-Forwarded-For") == ["127.0.0.1"]


@pytest.mark.timeout(20)
def test_missing_malformed_or_late_headers_close_the_connection(pp_proxy):
    seen = len(pp_proxy.backend.requests)
    for preface in (b"", b"PROXY TCP4 nonsense\r\n", b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x00"):
        with pp_proxy.connect() as sock:
            sock.sendall(preface + b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            data, closed = recv_until_close(sock, 3)
        assert closed and data == b"", (preface, data)
    with pp_proxy.connect() as sock:           # half a header, then nothing: client_header (1 s)
        sock.sendall(b"PROXY TCP4 192.0.2.1 ")
        started = time.monotonic()
        data, closed = recv_until_close(sock, 4)
        assert closed and data == b"" and 0.7 < time.monotonic() - started < 2.5
    assert len(pp_proxy.backend.requests) == seen
    # Logged at the end of the loop turn that closed it: the client may see the close first.
    wait_for(lambda: "closed: no complete PROXY protocol header in time" in pp_proxy.error_text(), 5, 0.05,
             "the error log line")


def test_the_header_comes_before_tls(proxy_factory, http_backend, tmp_path):
    backend = http_backend()
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    cert_path, key_path = tmp_path / "c.pem", tmp_path / "c.key"
    cert.private_key_pem.write_to_path(str(key_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], start=False, workers=1)
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "proxy_protocol": True,
                               "tls": {"cert": str(cert_path), "key": str(key_path)}}]
    proxy.start()
    context = ssl.create_default_context()
    ca.configure_trust(context)
    raw = proxy.connect()
    raw.sendall(header(2, b"203.0.113.50", 5000, b"127.0.0.1", proxy.port))
    with context.wrap_socket(raw, server_hostname="localhost") as sock:
        sock.sendall(b"GET /tls HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        assert read_raw_response(sock).status == 200
    assert backend.header(0, "X-Forwarded-For") == ["203.0.113.50"]
    assert backend.header(0, "X-Forwarded-Proto") == ["https"]


# == HAProxy in front ============================================================================
@pytest.mark.parametrize("send", ["send-proxy-v2", "send-proxy"])
def test_haproxy_in_front_names_the_real_client(proxy_factory, http_backend, tmp_path, send):
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], start=False, workers=2)
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "proxy_protocol": True}]
    proxy.start()
    front = free_port()
    haproxy = HAProxy(tmp_path / "haproxy", f"""
frontend l4
    mode tcp
    bind 127.0.0.1:{front}
    default_backend mpm
backend mpm
    mode tcp
    server mpm 127.0.0.1:{proxy.port} {send}
""", [front])
    try:
        for n in (21, 22):
            with socket.create_connection(("127.0.0.1", front), timeout=5, source_address=(f"127.0.0.{n}", 0)) as s:
                s.sendall(f"GET /via-haproxy-{n} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
                assert read_raw_response(s).status == 200
    finally:
        haproxy.close()
    forwarded = {r["target"]: dict(r["headers"])["x-forwarded-for"] for r in backend.requests}
    assert forwarded == {"/via-haproxy-21": "127.0.0.21", "/via-haproxy-22": "127.0.0.22"}
    assert wait_access(proxy, "GET /via-haproxy-21 ")[0].startswith("127.0.0.21 ")


# == sent to backends ================================================================================
def test_the_header_is_sent_to_backends_that_ask_for_it(proxy_factory, tmp_path):
    v1, v2 = free_port(), free_port()
    receiver = HAProxy(tmp_path / "receiver", "".join(f"""
frontend in_{port}
    mode http
    bind 127.0.0.1:{port} accept-proxy
    http-request return status 200 content-type text/plain lf-string "src=%[src] dst=%[dst]"
""" for port in (v1, v2)), [v1, v2])
    try:
        proxy = proxy_factory([
            {"path": "/v1/", "to": f"http://127.0.0.1:{v1}/", "proxy_protocol": "v1"},
            {"path": "/v2/", "to": "balancer://pp/"},
        ], workers=1, balancers={"pp": {"members": [{"url": f"http://127.0.0.1:{v2}", "proxy_protocol": "v2"}],
                                        "health": {"method": "GET", "path": "/", "interval": 0.3}}})
        for source in ("127.0.0.31", "127.0.0.32", "127.0.0.31"):
            for path in ("/v1/x", "/v2/y"):
                with proxy.connect(source=source) as sock:
                    for _ in range(2):               # keep-alive: a pooled connection keeps naming this client
                        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
                        answer = read_raw_response(sock)
                        assert answer.status == 200
                        assert answer.body == f"src={source} dst=127.0.0.1".encode(), (path, answer.body)
        # The master's health checks speak it too (as LOCAL: they carry no client).
        wait_for(lambda: _check_of(proxy) == "pass", 5, 0.1, "a passing health check")
    finally:
        receiver.close()


def _check_of(proxy) -> str:
    result = proxy.mpmctl("balancer", "--json")
    members = {b["name"]: b for b in json.loads(result.stdout)["balancers"]}["pp"]["members"]
    return members[0]["check"]["last"]


def test_the_header_goes_before_tls_to_https_backends(proxy_factory, tmp_path):
    """Review 2026-12-03-tls-h2 #1: the header went inside the TLS session, as the first
    application bytes; HAProxy `accept-proxy ssl` (like nginx `listen ... ssl
    proxy_protocol`) reads it in clear before the ClientHello, so every request got 502."""
    ca = trustme.CA()
    pem, capath = tmp_path / "server.pem", tmp_path / "ca.pem"
    issued = ca.issue_cert("127.0.0.1")
    pem.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems) + issued.private_key_pem.bytes())
    ca.cert_pem.write_to_path(str(capath))
    v1, v2 = free_port(), free_port()
    receiver = HAProxy(tmp_path / "receiver", "".join(f"""
frontend in_{port}
    mode http
    bind 127.0.0.1:{port} accept-proxy ssl crt {pem}
    http-request return status 200 content-type text/plain lf-string "src=%[src] tls=%[ssl_fc]"
""" for port in (v1, v2)), [v1, v2])
    try:
        proxy = proxy_factory([
            {"path": f"/{version}/", "to": f"https://127.0.0.1:{port}/", "tls": {"ca": str(capath)},
             "proxy_protocol": version} for version, port in (("v1", v1), ("v2", v2))], workers=1)
        for source in ("127.0.0.41", "127.0.0.42"):
            for path in ("/v1/x", "/v2/y"):
                with proxy.connect(source=source) as sock:
                    for _ in range(2):               # the second on the pooled connection of this client
                        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
                        answer = read_raw_response(sock)
                        assert (answer.status, answer.body) == (200, f"src={source} tls=1".encode()), path
    finally:
        receiver.close()
