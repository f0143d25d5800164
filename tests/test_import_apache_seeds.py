"""import-apache on every Apache snippet of the four seed documents (issue #16).

Each snippet is completed into a minimal valid httpd configuration (Listen, LoadModule,
closing tags; backend host names replaced by loopback backends of this test), converted
with the real `python -m mpm import-apache`, checked with `python -m mpm configtest`, and
served by a real mpm-proxy, through which an HTTP request and a WebSocket (a real echo)
must reach the backend the snippet sends them to.  Where a snippet does not do what its
document says (the guide's <Location> order, the tutorial's typos), the test shows what
httpd does and what the importer reports, and then the corrected snippet; plain-listener
configurations are also served by Apache httpd itself, and both must agree.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys

import pytest
import trustme
import yaml
from apache_util import APACHE, PROXY_MODULES, Apache, import_apache, preamble, reached
from balancer_util import Member
from rawsock import read_head, status_of
from support import ROOT, free_port
from wsutil import OP_TEXT, frame, read_frame, upgrade_request

pytestmark = pytest.mark.timeout(60)
SSL_MODULES = (*PROXY_MODULES, "ssl", "socache_shmcb")


class TlsMember(Member):
    """A Member behind TLS: the https:// and wss:// backends of the seeds."""

    def __init__(self, name: str, cert_files: tuple[str, str]):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(*cert_files)
        super().__init__(name)

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(10)
            conn = self.context.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError):
            conn.close()
            return
        super()._serve(conn)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A CA, a certificate for localhost (listener and TLS backends), and a client context."""
    ca = trustme.CA()
    directory = tmp_path_factory.mktemp("certs")
    issued = ca.issue_cert("localhost", "127.0.0.1")
    cert, key = str(directory / "localhost.pem"), str(directory / "localhost.key")
    issued.private_key_pem.write_to_path(key)
    issued.cert_chain_pems[0].write_to_path(cert)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return {"cert": cert, "key": key, "client": client}


@pytest.fixture
def members():
    made: list[Member] = []

    def make(name: str, tls: tuple[str, str] | None = None) -> Member:
        member = TlsMember(name, tls) if tls else Member(name)
        made.append(member)
        return member
    yield make
    for member in made:
        member.close()


def convert(tmp_path, body: str, modules=PROXY_MODULES, expect_status: int = 0) -> tuple[dict, str]:
    """Write the completed configuration, import it, configtest the YAML: (YAML as data, stderr)."""
    conf, out = str(tmp_path / "httpd.conf"), str(tmp_path / "mpm.yaml")
    with open(conf, "w") as f:
        f.write(preamble(str(tmp_path), modules) + body)
    result = import_apache(conf, out)
    assert result.returncode == expect_status, result.stderr
    check = subprocess.run([sys.executable, "-m", "mpm", "configtest", "-c", out], capture_output=True,
                           text=True, timeout=30, cwd=ROOT)
    assert check.returncode == 0 and check.stdout.strip() == "Syntax OK", check.stderr
    with open(out) as f:
        return yaml.safe_load(f), result.stderr


def serve(proxy_factory, generated: dict, tls: bool = False):
    """A real mpm-proxy with the generated routes, balancers, timeouts (on a port of its own)."""
    sections = {k: v for k, v in generated.items() if k not in ("listen", "control", "log", "routes")}
    proxy = proxy_factory(generated["routes"], start=False, **sections)
    if tls:
        (entry,) = generated["listen"]
        proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "tls": entry["tls"]}]
    return proxy.start()


def connect(port: int, client: ssl.SSLContext | None = None) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return client.wrap_socket(sock, server_hostname="localhost") if client else sock


def http_get(port: int, path: str, client=None) -> tuple[int, bytes]:
    with connect(port, client) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        head, rest = read_head(sock)
        while chunk := sock.recv(65536):
            rest += chunk
        return status_of(head), bytes(rest)


def websocket_echo(port: int, path: str, client=None) -> bytes:
    """A WebSocket handshake and one text message through the proxy: what came back."""
    with connect(port, client) as sock:
        sock.sendall(upgrade_request(path, host="localhost"))
        head, rest = read_head(sock)
        assert status_of(head) == 101, head
        sock.sendall(frame(b"hello through " + path.encode(), OP_TEXT))
        opcode, payload = read_frame(sock, rest)
        assert opcode == OP_TEXT
        return payload


def agree_with_apache(tmp_path, port: int, proxy, backends: list[Member], requests: list[tuple]) -> None:
    """Serve the same configuration with Apache httpd: every request reaches the same backend."""
    if not os.path.exists(APACHE):
        if os.environ.get("CI"):
            pytest.fail("apache2 is not installed, and CI is set: CI must run this comparison")
        return      # the mpm-proxy half of the test has run; only the comparison needs Apache
    apache = Apache(str(tmp_path / "httpd.conf"), [port]).start()
    try:
        for path, options in requests:
            assert reached(backends, proxy.port, path, **options) == reached(backends, port, path, **options), path
    finally:
        apache.stop()


# == apache-mod_proxy_wstunnel.txt ==============================================================


@pytest.mark.parametrize("fallback", ["On", "Off"])
def test_wstunnel_doc_proxypass_ws_and_wss(tmp_path, proxy_factory, members, certs, fallback):
    """ProxyPass "/ws2/" "ws://echo.websocket.org/" and "/wss2/" "wss://echo.websocket.org/",
    under both values of the same document's ProxyWebsocketFallbackToProxyHttp."""
    ws, wss, rest = members("ws"), members("wss", (certs["cert"], certs["key"])), members("rest")
    port = free_port()
    generated, _ = convert(tmp_path, f"""
Listen 127.0.0.1:{port}
SSLProxyEngine on
SSLProxyCheckPeerName off
ProxyWebsocketFallbackToProxyHttp {fallback}
ProxyPass "/ws2/" "ws://127.0.0.1:{ws.port}/"
ProxyPass "/wss2/" "wss://127.0.0.1:{wss.port}/"
ProxyPass / http://127.0.0.1:{rest.port}/
""", SSL_MODULES)
    proxy = serve(proxy_factory, generated)
    assert websocket_echo(proxy.port, "/ws2/chat") == b"hello through /ws2/chat"
    assert ws.requests[-1]["target"] == "/chat" and ws.requests[-1]["ws"]
    assert websocket_echo(proxy.port, "/wss2/chat") == b"hello through /wss2/chat"
    assert wss.requests[-1]["target"] == "/chat"
    status, body = http_get(proxy.port, "/ws2/page")
    # With the fallback (the default) mod_proxy_http sends it to the ws:// backend as plain
    # HTTP; without it mod_proxy_wstunnel passes a request without Upgrade to the next rule.
    assert (status, body) == (200, b"ws" if fallback == "On" else b"rest")
    # httpd's legacy mod_proxy_wstunnel (fallback Off) intermittently stalls on a wss:// upgrade
    # to this backend (2.4.71 here), so that one request is compared with the fallback only.
    wss_upgrade = [("/wss2/x", {"ws": True})] if fallback == "On" else []
    agree_with_apache(tmp_path, port, proxy, [ws, wss, rest], [
        ("/ws2/chat", {"ws": True}), ("/ws2/page", {}), *wss_upgrade, ("/wss2/x", {}), ("/other", {"ws": True})])


def test_wstunnel_doc_proxypassmatch_before_catch_all(tmp_path, proxy_factory, members):
    """ProxyPassMatch ^/(myApp/ws)$ ws://backend.example.com:9080/$1 + ProxyPass / http://..."""
    backend = members("backend")
    port = free_port()
    generated, _ = convert(tmp_path, f"""
Listen 127.0.0.1:{port}
ProxyPassMatch ^/(myApp/ws)$  ws://127.0.0.1:{backend.port}/$1
ProxyPass / http://127.0.0.1:{backend.port}/
""")
    proxy = serve(proxy_factory, generated)
    assert websocket_echo(proxy.port, "/myApp/ws") == b"hello through /myApp/ws"
    assert backend.requests[-1] == {**backend.requests[-1], "target": "/myApp/ws", "ws": True}
    assert http_get(proxy.port, "/myApp/page") == (200, b"backend")
    assert backend.requests[-1]["target"] == "/myApp/page" and not backend.requests[-1]["ws"]
    agree_with_apache(tmp_path, port, proxy, [backend], [
        ("/myApp/ws", {"ws": True}), ("/myApp/ws", {}), ("/myApp/ws/more", {"ws": True}), ("/x", {"ws": True})])


def test_wstunnel_doc_rewrite_on_upgrade_headers(tmp_path, proxy_factory, members):
    """ProxyPass / http://example.com:9080/ + RewriteCond %{HTTP:Upgrade} websocket [NC] +
    RewriteCond %{HTTP:Connection} upgrade [NC] + RewriteRule ^/?(.*) "ws://..." [P,L]."""
    http, ws = members("http"), members("ws")
    port = free_port()
    generated, _ = convert(tmp_path, f"""
Listen 127.0.0.1:{port}
ProxyPass / http://127.0.0.1:{http.port}/
RewriteEngine on
RewriteCond %{{HTTP:Upgrade}} websocket [NC]
RewriteCond %{{HTTP:Connection}} upgrade [NC]
RewriteRule ^/?(.*) "ws://127.0.0.1:{ws.port}/$1" [P,L]
""")
    assert [r["to"].split("/")[0] for r in generated["routes"]] == ["ws:", "http:"]   # rewrite first
    proxy = serve(proxy_factory, generated)
    assert websocket_echo(proxy.port, "/any/path") == b"hello through /any/path"
    assert ws.requests[-1]["target"] == "/any/path"
    assert http_get(proxy.port, "/any/path") == (200, b"http")
    agree_with_apache(tmp_path, port, proxy, [http, ws], [
        ("/a", {"ws": True}), ("/a", {}), ("/a", {"ws": True, "connection": "keep-alive"}), ("/", {"ws": True})])


# == article-apache-websockets-support.txt =======================================================


def test_article_rewrite_equals_websocket(tmp_path, proxy_factory, members):
    """RewriteCond %{HTTP:Upgrade} =websocket [NC] + RewriteRule /(.*) ws://127.0.0.1:8080/$1 [P,L],
    ProxyTimeout 300, the mpm_event sizes, LogLevel debug; the rest follows "standard ProxyPass
    rules" (the article's FAQ 3), here ProxyPass / to the same backend."""
    backend = members("backend")
    port = free_port()
    generated, stderr = convert(tmp_path, f"""
Listen 127.0.0.1:{port}
HostnameLookups Off
LogLevel debug
<IfModule mpm_event_module>
    ThreadsPerChild 64
    MaxRequestWorkers 128
</IfModule>
<VirtualHost *:{port}>
    RewriteEngine On
    RewriteCond %{{HTTP:Upgrade}} =websocket [NC]
    RewriteRule /(.*) ws://127.0.0.1:{backend.port}/$1 [P,L]
    ProxyTimeout 300
    ProxyPass / http://127.0.0.1:{backend.port}/
</VirtualHost>
""")
    assert generated["mpm"] == {"threads_per_child": 64, "max_request_workers": 128}
    assert generated["log"]["level"] == "debug"
    assert all(r.get("timeout") == 300 for r in generated["routes"])     # the virtual host's ProxyTimeout
    assert "HostnameLookups Off (no mpm-proxy equivalent)" in stderr
    proxy = serve(proxy_factory, generated)
    assert websocket_echo(proxy.port, "/feed") == b"hello through /feed"
    assert backend.requests[-1]["target"] == "/feed" and backend.requests[-1]["ws"]
    assert http_get(proxy.port, "/feed") == (200, b"backend")
    agree_with_apache(tmp_path, port, proxy, [backend], [
        ("/feed", {"ws": True}), ("/feed", {}), ("/feed", {"ws": True, "headers": {}, "host": "x"})])


# == guide-proxy-for-websocket-connections.txt ===================================================


GUIDE = """
Listen 127.0.0.1:{port}
SSLProxyEngine on
SSLProxyCheckPeerName off
<VirtualHost *:{port}>
    ServerName yourdomain.com
{locations}
</VirtualHost>
"""
GUIDE_LOCATIONS = {
    "ws": """    <Location /ws/>
        ProxyPass ws://127.0.0.1:{ws}/ws/
        ProxyPassReverse ws://127.0.0.1:{ws}/ws/
    </Location>""",
    "wss": """    <Location /wss/>
        ProxyPass wss://127.0.0.1:{wss}/wss/
        ProxyPassReverse wss://127.0.0.1:{wss}/wss/
    </Location>""",
    "/": """    <Location />
        ProxyPass http://127.0.0.1:{http}/
        ProxyPassReverse http://127.0.0.1:{http}/
    </Location>""",
}


def _guide(order: list[str], port: int, ws, wss, http) -> str:
    sections = "\n".join(GUIDE_LOCATIONS[k] for k in order).format(ws=ws.port, wss=wss.port, http=http.port)
    return GUIDE.format(port=port, locations=sections)


def test_guide_locations_as_written(tmp_path, proxy_factory, members, certs):
    """The guide puts <Location /> last.  httpd merges <Location> sections in file order and
    the last matching one's ProxyPass wins, so / takes /ws/ and /wss/ too: the importer
    translates that, and says why the two other sections are never used."""
    ws, wss, http = members("ws"), members("wss", (certs["cert"], certs["key"])), members("http")
    port = free_port()
    generated, stderr = convert(tmp_path, _guide(["ws", "wss", "/"], port, ws, wss, http), SSL_MODULES)
    assert [r.get("path") for r in generated["routes"]] == ["/"]
    assert stderr.count("never used: <Location /> at") == 2
    assert "the last matching <Location> wins: put the more general section first" in stderr
    proxy = serve(proxy_factory, generated)
    assert http_get(proxy.port, "/ws/page") == (200, b"http")
    assert http.requests[-1]["target"] == "/ws/page"
    agree_with_apache(tmp_path, port, proxy, [ws, wss, http], [
        ("/ws/chat", {"ws": True}), ("/wss/chat", {"ws": True}), ("/", {})])


def test_guide_locations_general_first(tmp_path, proxy_factory, members, certs):
    """The same sections with <Location /> first: /ws/ and /wss/ reach their WebSocket
    backends (wss over TLS), the rest the HTTP one, with ProxyPassReverse on every route."""
    ws, wss, http = members("ws"), members("wss", (certs["cert"], certs["key"])), members("http")
    port = free_port()
    generated, _ = convert(tmp_path, _guide(["/", "ws", "wss"], port, ws, wss, http), SSL_MODULES)
    assert [r["path"] for r in generated["routes"]] == ["/wss/", "/ws/", "/"]
    assert all(r["reverse"] for r in generated["routes"])
    proxy = serve(proxy_factory, generated)
    assert websocket_echo(proxy.port, "/ws/chat") == b"hello through /ws/chat"
    assert ws.requests[-1]["target"] == "/ws/chat"
    assert websocket_echo(proxy.port, "/wss/chat") == b"hello through /wss/chat"
    assert wss.requests[-1]["target"] == "/wss/chat"
    assert http_get(proxy.port, "/index.html") == (200, b"http")
    agree_with_apache(tmp_path, port, proxy, [ws, wss, http], [
        ("/ws/chat", {"ws": True}), ("/ws/chat", {}), ("/wss/chat", {"ws": True}), ("/ws", {"ws": True}),
        ("/index.html", {})])


# == tutorial-apache-reverse-proxy-websockets.txt ================================================


TUTORIAL = """
Listen 127.0.0.1:{port}
SSLProxyEngine on
<VirtualHost *:{port}>
  SSLEngine on
  SSLCertificateFile {cert}
  SSLCertificateKeyFile {key}
  RewriteEngine on
  RewriteCond {var}{{HTTP:Upgrade}} websocket [NC]
  RewriteCond {var}{{HTTP:Connection}} upgrade [NC]
  RewriteRule .* "{target}" [P,L]
{proxy}
  ProxyRequests off
</VirtualHost>
"""
TUTORIAL_PLAIN = """  ProxyPass / https://127.0.0.1:{backend}/
  ProxyPassReverse / https://127.0.0.1:{backend}/"""
TUTORIAL_BALANCER = """  <Proxy balancer://backend-cluster>
    BalancerMember http://127.0.0.1:{s1}
    BalancerMember http://127.0.0.1:{s2}
    BalancerMember http://127.0.0.1:{s3}
  </Proxy>
  ProxyPass / balancer://backend-cluster/
  ProxyPassReverse / balancer://backend-cluster/"""


def test_tutorial_as_written_reports_its_typos(tmp_path, proxy_factory, members, certs):
    """The tutorial writes ${HTTP:Upgrade} (a RewriteMap lookup of a map that does not exist:
    always empty) and "wss:/localhost:3000/$1" (one slash: not a URL).  The rule never
    applies in httpd; the importer says so, with the fixes, and translates what httpd does:
    a WebSocket request goes to ProxyPass / https://..., as plain HTTP (no upgrade=)."""
    backend = members("backend", (certs["cert"], certs["key"]))
    port = free_port()
    generated, stderr = convert(tmp_path, TUTORIAL.format(
        port=port, cert=certs["cert"], key=certs["key"], var="$", target="wss:/localhost:3000/$1",
        proxy=TUTORIAL_PLAIN.format(backend=backend.port)), SSL_MODULES)
    assert "did you mean %{HTTP:Upgrade}?" in stderr and "did you mean %{HTTP:Connection}?" in stderr
    assert "it never applies: its conditions are always false" in stderr
    assert "(did you mean 'wss://localhost:3000/'?)" in stderr
    assert [r["to"] for r in generated["routes"]] == [f"https://127.0.0.1:{backend.port}/"]
    proxy = serve(proxy_factory, generated, tls=True)
    assert http_get(proxy.port, "/page", certs["client"]) == (200, b"backend")
    with connect(proxy.port, certs["client"]) as sock:
        sock.sendall(upgrade_request("/socket", host="localhost"))
        head, _ = read_head(sock)
    assert status_of(head) == 200 and backend.requests[-1] == {**backend.requests[-1], "ws": False}


@pytest.mark.parametrize("proxy_kind", ["plain", "balancer"])
def test_tutorial_corrected(tmp_path, proxy_factory, members, certs, proxy_kind):
    """The tutorial's two vhosts with its prose's substitution, `wss://...%{REQUEST_URI}`, and
    %{HTTP:...}: WebSockets tunnel to the wss backend, HTTP goes to ProxyPass's https backend
    or to the three-member balancer (server01..03)."""
    wss = members("wss", (certs["cert"], certs["key"]))
    servers = [members(f"server0{i}") for i in (1, 2, 3)]
    backend = members("https", (certs["cert"], certs["key"]))
    proxy_text = TUTORIAL_PLAIN.format(backend=backend.port) if proxy_kind == "plain" else \
        TUTORIAL_BALANCER.format(s1=servers[0].port, s2=servers[1].port, s3=servers[2].port)
    generated, _ = convert(tmp_path, TUTORIAL.format(
        port=free_port(), cert=certs["cert"], key=certs["key"], var="%",
        target=f"wss://127.0.0.1:{wss.port}%{{REQUEST_URI}}", proxy=proxy_text), SSL_MODULES)
    assert generated["listen"][0]["tls"]["cert"] == certs["cert"]
    proxy = serve(proxy_factory, generated, tls=True)
    assert websocket_echo(proxy.port, "/socket.io/?EIO=4", certs["client"]) == b"hello through /socket.io/?EIO=4"
    assert wss.requests[-1]["target"] == "/socket.io/?EIO=4"
    status, body = http_get(proxy.port, "/app", certs["client"])
    expected = {"https"} if proxy_kind == "plain" else {"server01", "server02", "server03"}
    assert status == 200 and body.decode() in expected
