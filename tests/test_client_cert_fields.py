"""The backend learns who a verified client certificate names (worker.clientcert).

A listener with `tls.client_ca` adds X-SSL-Client-Verify, -S-DN, -I-DN and -Serial to every
request (mod_ssl's SSL_CLIENT_* as Apache's `RequestHeader set` passes them, and nginx's
$ssl_client_s_dn), over HTTP/1.1 and HTTP/2, on resumed sessions too; the distinguished names
are exactly what `openssl x509 -nameopt RFC2253` prints (the real openssl CLI, on a subject
full of characters RFC 4514 escapes), the same as a real Apache httpd sends.  Once a listener
has client_ca, what a client writes in X-SSL-Client-* never reaches a backend, on any listener,
unless it comes from a trusted proxy.
"""

from __future__ import annotations

import datetime
import os
import socket
import ssl
import subprocess

import pytest
import trustme
import yaml
from apache_util import APACHE, PROXY_MODULES, Apache, import_apache, preamble
from h2client import H2Client
from rawsock import read_head, recv_exact, status_of
from support import free_port

# RFC 4514's specials, a leading '#', a trailing space, UTF-8 and a control character.
AWKWARD_CN = 'Zoë, "the" <admin>+1;\\ #\x07 '


def _pair(tmp_path, leaf, name: str) -> tuple[str, str]:
    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    return str(cert), str(key)


def _openssl(cert: str, what: str) -> str:
    """`openssl x509 -subject|-issuer|-serial` with RFC 2253 names: what nginx and mod_ssl print."""
    out = subprocess.run(["openssl", "x509", "-in", cert, "-noout", f"-{what}", "-nameopt", "RFC2253"],
                         capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    return out.split("=", 1)[1]


@pytest.fixture
def mtls(proxy_factory, http_backend, tmp_path):
    """A proxy whose TLS listener requires client certificates, and a client context holding one."""
    ca = trustme.CA()
    site = _pair(tmp_path, ca.issue_cert("localhost"), "site")
    (tmp_path / "clients.pem").write_bytes(ca.cert_pem.bytes())
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], start=False, workers=1,
                          limits={"trusted_proxies": ["127.0.0.2/32"]})
    proxy.plain_port = free_port()
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}",
                               "tls": {"cert": site[0], "key": site[1], "client_ca": str(tmp_path / "clients.pem")}},
                              f"127.0.0.1:{proxy.plain_port}"]
    proxy.start()
    client_cert, client_key = _pair(tmp_path, ca.issue_cert("client@example.test", common_name=AWKWARD_CN), "client")
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.load_cert_chain(client_cert, client_key)
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    return proxy, backend, context, client_cert


def _get_twice(port: int, context, session=None):
    """Two requests on one TLS connection (the second says its client sends forged fields)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost", session=session) as sock:
        sock.sendall(b"GET /one HTTP/1.1\r\nHost: t\r\n\r\n")
        head, buf = read_head(sock)
        assert status_of(head) == 200, head
        recv_exact(sock, 5, buf)       # the backend's "hello"
        sock.sendall(b"GET /two HTTP/1.1\r\nHost: t\r\nX-SSL-Client-S-DN: CN=admin\r\n"
                     b"x-ssl-client-verify: SUCCESS\r\nX-Ssl-Client-Cn: admin\r\nConnection: close\r\n\r\n")
        head, _ = read_head(sock)
        assert status_of(head) == 200, head
        return sock.session, sock.session_reused


def _identity(backend, index: int) -> dict:
    return {name: backend.header(index, name) for name in
            ("X-SSL-Client-Verify", "X-SSL-Client-S-DN", "X-SSL-Client-I-DN", "X-SSL-Client-Serial", "X-SSL-Client-Cn")}


@pytest.mark.timeout(60)
def test_every_request_names_the_verified_client_certificate_as_openssl_prints_it(mtls):
    proxy, backend, context, client_cert = mtls
    expected = {"X-SSL-Client-Verify": ["SUCCESS"], "X-SSL-Client-S-DN": [_openssl(client_cert, "subject")],
                "X-SSL-Client-I-DN": [_openssl(client_cert, "issuer")],
                "X-SSL-Client-Serial": [_openssl(client_cert, "serial")], "X-SSL-Client-Cn": []}
    assert expected["X-SSL-Client-S-DN"][0].startswith("CN=Zo\\C3\\AB\\, \\\"the\\\" \\<admin\\>\\+1\\;\\\\ #\\07\\ ,")
    session, reused = _get_twice(proxy.port, context)
    assert not reused
    _, reused = _get_twice(proxy.port, context, session)      # a resumed session keeps its client
    assert reused
    assert len(backend.requests) == 4
    for index in range(4):     # the forged ones (the second and fourth request's) did not pass
        assert _identity(backend, index) == expected, (index, backend.requests[index]["headers"])


@pytest.mark.timeout(60)
def test_an_http2_stream_names_the_client_certificate_too(mtls):
    proxy, backend, context, client_cert = mtls
    client = H2Client(proxy.port, tls=context)
    try:
        stream = client.request("GET", "/h2", headers=[("x-ssl-client-s-dn", "CN=admin")])
        assert client.response(stream).status == 200
    finally:
        client.close()
    assert backend.header(0, "X-SSL-Client-S-DN") == [_openssl(client_cert, "subject")]
    assert backend.header(0, "X-SSL-Client-Verify") == ["SUCCESS"]


# With `_` for `-` too: CGI, WSGI, PHP and Rack read X_SSL_Client_Verify as X-SSL-Client-Verify
# (review 2026-12-04 #2).
FORGED = (b"X-SSL-Client-Verify: SUCCESS\r\nX-Ssl-Client-S-Dn: CN=admin\r\nX-SSL-Client-Cert: x\r\n"
          b"X_SSL_Client_Serial: 1\r\nX-SSL-Client_I-DN: CN=ca\r\n"
          b"X-SSL-Clientele: kept\r\nX-SSL-Client: kept\r\nHostname: kept\r\n")


def _plain_get(port: int, source: str = "127.0.0.1") -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n" + FORGED + b"Connection: close\r\n\r\n")
        head, _ = read_head(sock)
        assert status_of(head) == 200, head


@pytest.mark.timeout(60)
def test_no_client_writes_the_fields_on_any_listener_but_a_trusted_proxy_does(mtls):
    """Once a listener has client_ca, a plain one beside it does not pass a client's
    X-SSL-Client-* either (a backend behind both would take them for ours)."""
    proxy, backend, _, _ = mtls
    _plain_get(proxy.plain_port)                       # a client
    _plain_get(proxy.plain_port, "127.0.0.2")          # the trusted proxy
    names = [[k.lower().replace("_", "-") for k, _ in request["headers"]] for request in backend.requests]
    assert not [n for n in names[0] if n.startswith("x-ssl-client-")], names[0]
    assert {"x-ssl-clientele", "x-ssl-client", "hostname"} <= set(names[0])
    assert backend.header(1, "X-SSL-Client-S-DN") == ["CN=admin"]     # the trusted proxy's client
    assert backend.header(1, "X-SSL-Client-Verify") == ["SUCCESS"]


@pytest.mark.timeout(60)
def test_no_client_writes_the_fields_in_a_trailer_section_either(mtls):
    """Review 2026-12-04 #1: a backend that merges trailers into the head (httpd's MergeTrailers;
    CVE-2013-5704 was that bypass of `RequestHeader unset`) would read them there.  A relayed
    HTTP/1.1 body is not rewritten: 400, as for X-Forwarded-* there.  HTTP/2 trailers are
    written by the proxy: dropped."""
    proxy, backend, context, _ = mtls
    with socket.create_connection(("127.0.0.1", proxy.plain_port), timeout=10) as sock:
        sock.sendall(b"POST /h1 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"3\r\nabc\r\n0\r\nX_SSL_Client_Verify: SUCCESS\r\n\r\n")
        head, _ = read_head(sock)
    assert status_of(head) == 400, head
    client = H2Client(proxy.port, tls=context)
    try:
        stream = client.request("POST", "/h2", body=b"abc", end=False)
        client.conn.send_headers(stream, [("x-ssl-client-s-dn", "CN=admin"), ("x-trace", "kept")], end_stream=True)
        client.flush()
        assert client.response(stream).status == 200
    finally:
        client.close()
    [raw] = [raw for raw in backend.raw if b"POST /h2 " in raw]
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert b"x-trace: kept" in rest.lower() and b"cn=admin" not in raw.lower(), raw


def _name(kind: str):
    """A subject of the `kind` the tests below need, and what OpenSSL's RFC 2253 output says of it."""
    from cryptography import x509
    from cryptography.x509.name import _ASN1Type
    oid, rdn, attribute = x509.NameOID, x509.RelativeDistinguishedName, x509.NameAttribute
    if kind == "multi-valued":
        return (x509.Name([rdn([attribute(oid.ORGANIZATION_NAME, "Example")]),
                           rdn([attribute(oid.JURISDICTION_COUNTRY_NAME, "DE")]),
                           rdn([attribute(oid.BUSINESS_CATEGORY, "Private")]),
                           rdn([attribute(oid.COMMON_NAME, "alice"), attribute(oid.USER_ID, "42")])]),
                "UID=42+CN=alice,businessCategory=Private,jurisdictionC=DE,O=Example")
    private = x509.ObjectIdentifier("1.3.6.1.4.1.99999.7")          # a private OID OpenSSL has no name for
    return (x509.Name([rdn([attribute(oid.ORGANIZATION_NAME, "Example")]),
                       rdn([attribute(private, "x,y"), attribute(oid.COMMON_NAME, "bob")]),
                       rdn([attribute(x509.ObjectIdentifier("2.999.5"), "Zoë", _ASN1Type.UTF8String)])]),
            "2.999.5=#0C045A6FC3AB,1.3.6.1.4.1.99999.7=#0C03782C79+CN=bob,O=Example")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["multi-valued", "unknown-oid"])
def test_a_name_is_printed_as_openssl_prints_it(proxy_factory, http_backend, tmp_path, kind):
    """Review 2026-12-04 #4: within a relative name of several values, OpenSSL's RFC 2253 output
    (nginx's, mod_ssl's) puts the last first, as it does the names; and an EV certificate's
    jurisdiction names go by OpenSSL's short names.  An attribute whose OID OpenSSL has no
    name for is printed dotted, with '#' and its value's DER in hex (RFC 4514 §2.4), where
    Python's ssl gives the decoded string."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    ca = trustme.CA()
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    name, printed = _name(kind)
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(ca_key, hashes.SHA256()))
    client_cert, client_key = tmp_path / "named.pem", tmp_path / "named.key"
    client_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    client_key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    site = _pair(tmp_path, ca.issue_cert("localhost"), "site")
    (tmp_path / "clients.pem").write_bytes(ca.cert_pem.bytes())
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], start=False, workers=1)
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}",
                               "tls": {"cert": site[0], "key": site[1], "client_ca": str(tmp_path / "clients.pem")}}]
    proxy.start()
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.load_cert_chain(str(client_cert), str(client_key))
    _get_twice(proxy.port, context)
    expected = _openssl(str(client_cert), "subject")
    assert expected == printed
    assert backend.header(0, "X-SSL-Client-S-DN") == [expected]
    assert backend.header(0, "X-SSL-Client-I-DN") == [_openssl(str(client_cert), "issuer")]


@pytest.mark.timeout(60)
def test_without_a_client_ca_listener_the_fields_are_left_alone(proxy_factory, http_backend):
    """As nginx and Apache leave them unless told: nothing to protect, nothing paid per request."""
    backend = http_backend()
    proxy = proxy_factory([{"path": "/", "to": backend.url + "/"}], workers=1)
    _plain_get(proxy.port)
    assert backend.header(0, "X-SSL-Client-S-DN") == ["CN=admin"]


@pytest.mark.timeout(90)
def test_apache_and_its_import_tell_the_backend_the_same_client(proxy_factory, http_backend, tmp_path):
    """A real httpd with mod_ssl's usual lines (`RequestHeader set X-SSL-Client-S-DN
    "%{SSL_CLIENT_S_DN}s"`, ...), and mpm-proxy serving what `mpmctl import-apache` made of
    them: the backend gets the same four fields from both, byte for byte, for a subject full of
    RFC 4514's specials, also when the client sent its own.  (ASCII: for UTF-8 in a name,
    mod_ssl sends the raw bytes where nginx and mpm-proxy send \\XX escapes.)"""
    if not os.path.exists(APACHE):
        if os.environ.get("CI"):
            pytest.fail("Apache httpd (apache2) is not installed, and CI is set: CI must run this test")
        pytest.skip("Apache httpd (apache2) is not installed (Debian: apt-get install apache2)")
    ca = trustme.CA()
    cert, key = _pair(tmp_path, ca.issue_cert("localhost"), "site")
    (tmp_path / "clients.pem").write_bytes(ca.cert_pem.bytes())
    backend = http_backend()
    port = free_port()
    fields = [("X-SSL-Client-S-DN", "SSL_CLIENT_S_DN"), ("X-SSL-Client-I-DN", "SSL_CLIENT_I_DN"),
              ("X-SSL-Client-Serial", "SSL_CLIENT_M_SERIAL"), ("X-SSL-Client-Verify", "SSL_CLIENT_VERIFY")]
    conf = tmp_path / "httpd.conf"
    conf.write_text(preamble(str(tmp_path), PROXY_MODULES + ("ssl",)) + f"""
Listen 127.0.0.1:{port}
<VirtualHost 127.0.0.1:{port}>
    SSLEngine on
    SSLCertificateFile {cert}
    SSLCertificateKeyFile {key}
    SSLVerifyClient require
    SSLCACertificateFile {tmp_path}/clients.pem
""" + "".join(f'    RequestHeader set {name} "%{{{var}}}s"\n' for name, var in fields) + f"""
    ProxyPass / {backend.url}/
</VirtualHost>
""")
    result = import_apache(str(conf), str(tmp_path / "mpm.yaml"))
    assert result.returncode == 0, result.stderr          # nothing the backend relies on is lost
    generated = yaml.safe_load((tmp_path / "mpm.yaml").read_text())
    [listener] = generated["listen"]
    proxy = proxy_factory(generated["routes"], start=False, workers=1)
    proxy.config["listen"] = [{**listener, "address": f"127.0.0.1:{proxy.port}"}]
    proxy.start()
    client_cert, client_key = _pair(tmp_path, ca.issue_cert("client@example.test",
                                                            common_name="O'Brien, \"the\" <admin>+1;\\ #x "), "client")
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.load_cert_chain(client_cert, client_key)
    apache = Apache(str(conf), [port]).start()
    try:
        for served_by in (port, proxy.port):
            _get_twice(served_by, context)
    finally:
        apache.stop()
    assert len(backend.requests) == 4
    by_apache, by_mpm = ([{name: backend.header(i, name) for name, _ in fields} for i in pair]
                         for pair in ((0, 1), (2, 3)))
    assert by_apache[0]["X-SSL-Client-S-DN"] == [_openssl(client_cert, "subject")]
    assert by_mpm == by_apache, (by_mpm, by_apache)
