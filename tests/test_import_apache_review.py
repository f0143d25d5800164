"""import-apache faults found by the 2026-12-03 review (docs/reviews/2026-12-03-apache): each
test serves one httpd configuration with the real Apache httpd and, translated, with a real
mpm-proxy, sends the same requests to both, and checks where httpd sent each one (so the test
says what httpd does) and that mpm-proxy sent it to the same backend with the same path."""

from __future__ import annotations

import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml
from apache_util import APACHE, Apache, ask, import_apache, preamble, reached
from balancer_util import Member
from support import free_port

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def backends():
    made = {name: Member(name) for name in ("A", "B", "C")}
    yield made
    for member in made.values():
        member.close()


def differential(tmp_path, proxy_factory, backends: dict, body: str, requests: list[tuple], status: int = 0):
    """([(httpd's answer, mpm-proxy's answer)] per request, the import's stderr).  An answer is
    reached()'s: (backend, path, upgraded, Host) or ('-', status)."""
    if not os.path.exists(APACHE):
        if os.environ.get("CI"):
            pytest.fail("apache2 is not installed, and CI is set: CI must run this comparison")
        pytest.skip("Apache httpd (apache2) is not installed")
    port = free_port()
    conf, out = tmp_path / "httpd.conf", tmp_path / "mpm.yaml"
    conf.write_text(preamble(str(tmp_path)) + body.format(port=port, **{n: m.port for n, m in backends.items()}))
    result = import_apache(str(conf), str(out))
    assert result.returncode == status, result.stderr
    generated = yaml.safe_load(out.read_text())
    sections = {k: v for k, v in generated.items() if k not in ("listen", "control", "log", "routes")}
    proxy = proxy_factory(generated["routes"], **sections)
    members = list(backends.values())
    apache = Apache(str(conf), [port]).start()
    try:
        answers = [(reached(members, port, path, **options), reached(members, proxy.port, path, **options))
                   for path, options in requests]
    finally:
        apache.stop()
    return answers, result.stderr


def backend_of(answers) -> list[str]:
    """Which backend httpd sent each request to; and mpm-proxy must agree on every one."""
    assert [m for _, m in answers] == [a for a, _ in answers]
    return [a[0] for a, _ in answers]


def test_balancers_of_one_name_stay_apart_and_lbset_is_a_standby_tier(tmp_path, proxy_factory, backends):
    """httpd's balancers belong to a server: two virtual hosts' `balancer://mycluster` are two
    balancers, and a virtual host finds the main server's before its own (which is then never
    used).  The import merged them all into one, so a site's requests reached another's backends.
    And lbset=1 is a standby tier: httpd sends it nothing while a member of lbset 0 is usable
    (the import dropped lbset with exit 0, and the standby took half the requests)."""
    answers, stderr = differential(tmp_path, proxy_factory, backends, """
Listen 127.0.0.1:{port}
<Proxy balancer://pool>
  BalancerMember http://127.0.0.1:{C}
</Proxy>
<Proxy balancer://tiered>
  BalancerMember http://127.0.0.1:{A}
  BalancerMember http://127.0.0.1:{B} lbset=1
</Proxy>
ProxyPass /tiered/ balancer://tiered/
<VirtualHost *:{port}>
  ServerName app.test
  <Proxy balancer://mycluster>
    BalancerMember http://127.0.0.1:{A}
  </Proxy>
  <Proxy balancer://pool>
    BalancerMember http://127.0.0.1:{A}
  </Proxy>
  ProxyPass /pool/ balancer://pool/
  ProxyPass / balancer://mycluster/
</VirtualHost>
<VirtualHost *:{port}>
  ServerName other.test
  BalancerMember balancer://MyCluster http://127.0.0.1:{B}
  ProxyPass / balancer://mycluster/
</VirtualHost>
""", [(p, {"host": h}) for h in ("app.test", "other.test") for p in ("/x1", "/x2", "/pool/1", "/pool/2")]
        + [(f"/tiered/{i}", {"host": "other.test"}) for i in range(4)])
    assert backend_of(answers) == ["A", "A", "C", "C", "B", "B", "B", "B", "A", "A", "A", "A"]
    assert "never used: in this virtual host httpd uses the main server's balancer://pool" in stderr
    assert "lbset=" not in stderr


def test_ip_based_virtual_host_takes_its_address(tmp_path, proxy_factory, backends):
    """A <VirtualHost 127.0.0.1:PORT> beside <VirtualHost *:PORT> ones: httpd gives every
    connection to 127.0.0.1:PORT to the IP-based one, whatever the Host (the wildcard ones are
    only for addresses without one).  The import made them all name-based."""
    answers, stderr = differential(tmp_path, proxy_factory, backends, """
Listen 127.0.0.1:{port}
<VirtualHost *:{port}>
  ServerName app.test
  ProxyPass / http://127.0.0.1:{A}/
</VirtualHost>
<VirtualHost 127.0.0.1:{port}>
  ServerName other.test
  ProxyPass / http://127.0.0.1:{B}/
</VirtualHost>
""", [("/x", {"host": h}) for h in ("app.test", "other.test", "unknown.test")])
    assert backend_of(answers) == ["B", "B", "B"]
    assert "take every connection to it, so httpd never uses it" in stderr


def test_ip_based_virtual_host_on_a_listener_for_every_address_is_reported(tmp_path):
    """`Listen PORT` (every address): connections to 10.0.0.1 go to its IP-based virtual host
    in httpd, the others to the wildcard ones; mpm-proxy cannot tell them apart, so the
    IP-based one is reported as a routing difference (exit 1), not merged by name."""
    conf, out = tmp_path / "httpd.conf", tmp_path / "mpm.yaml"
    conf.write_text(preamble(str(tmp_path)) + """Listen 8080
<VirtualHost *:8080>
  ServerName app.test
  ProxyPass / http://127.0.0.1:9001/
</VirtualHost>
<VirtualHost 10.0.0.1:8080>
  ServerName other.test
  ProxyPass / http://127.0.0.1:9002/
</VirtualHost>
""")
    result = import_apache(str(conf), str(out))
    assert result.returncode == 1, result.stderr
    assert [r["to"] for r in yaml.safe_load(out.read_text())["routes"]] == ["http://127.0.0.1:9001/"]
    assert "not translated: <VirtualHost 10.0.0.1:8080> (httpd serves it only for connections to 10.0.0.1:8080" \
        in result.stderr


def test_proxypass_in_locationmatch_reads_a_pattern_without_wildcards_literally(tmp_path, proxy_factory, backends):
    """In <LocationMatch> (or <Location ~>) httpd's ProxyPass takes the pattern as a regex only
    when it holds *, ? or [; otherwise as literal text, a path prefix as in `ProxyPass /path`.
    So `^/api/` never applies (the server's `ProxyPass /` takes those paths) and `/b5/` sends
    /b5/x to .../v2/x.  The import read them all as regexes."""
    answers, stderr = differential(tmp_path, proxy_factory, backends, """
Listen 127.0.0.1:{port}
<LocationMatch "^/api/">
  ProxyPass http://127.0.0.1:{A}/v2
</LocationMatch>
<LocationMatch "/b5/">
  ProxyPass http://127.0.0.1:{B}/v2/
</LocationMatch>
<Location ~ "^/t8/">
  ProxyPass http://127.0.0.1:{A}/t/
</Location>
<LocationMatch "^/a2/.*">
  ProxyPass http://127.0.0.1:{B}/v2
</LocationMatch>
ProxyPass / http://127.0.0.1:{C}/
""", [(p, {"host": "app.test"}) for p in ("/api/x", "/b5/x", "/q/b5/x", "/t8/x", "/a2/x")])
    assert [a[:2] for a, _ in answers] == [("C", "/api/x"), ("B", "/v2/x"), ("C", "/q/b5/x"), ("C", "/t8/x"),
                                           ("B", "/v2/a2/x")]
    assert backend_of(answers) == ["C", "B", "C", "C", "B"]
    assert "never used: in <LocationMatch \"^/api/\"> httpd's ProxyPass reads '^/api/' as literal text" in stderr


@pytest.fixture
def slow_backend():
    """A backend that answers 200 one second after a request arrives; its port."""
    listener = socket.create_server(("127.0.0.1", 0))

    def answer(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            time.sleep(1.0)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=answer, args=(conn,), daemon=True).start()
    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


def test_proxytimeout_and_timeout_parameter_take_no_unit(tmp_path, proxy_factory, slow_backend):
    """mod_proxy reads ProxyTimeout and a worker's timeout= with atoi(): `500ms` is 500 seconds
    (httpd says nothing).  The import made it 0.5 s, so a backend answering in a second got a
    504 through mpm-proxy and a 200 through httpd."""
    if not os.path.exists(APACHE):
        pytest.skip("Apache httpd (apache2) is not installed")
    port = free_port()
    conf, out = tmp_path / "httpd.conf", tmp_path / "mpm.yaml"
    conf.write_text(preamble(str(tmp_path)) + f"""Listen 127.0.0.1:{port}
ProxyTimeout 500ms
ProxyPass /a/ http://127.0.0.1:{slow_backend}/a/
<VirtualHost *:{port}>
  ProxyPass /b/ http://127.0.0.1:{slow_backend}/b/ timeout=500ms
</VirtualHost>
""")
    result = import_apache(str(conf), str(out))
    assert result.returncode == 0, result.stderr
    generated = yaml.safe_load(out.read_text())
    assert generated["timeouts"]["proxy"] == 500
    assert [r.get("timeout") for r in generated["routes"]] == [None, 500]
    assert "ProxyTimeout: '500ms' is 500 seconds in httpd" in result.stderr
    proxy = proxy_factory(generated["routes"], timeouts=generated["timeouts"])
    apache = Apache(str(conf), [port]).start()
    try:
        with ThreadPoolExecutor(4) as pool:      # at once: each answer takes a second
            statuses = list(pool.map(lambda a: ask(*a), [(p, path) for p in (port, proxy.port)
                                                         for path in ("/a/x", "/b/x")]))
    finally:
        apache.stop()
    assert statuses == [200, 200, 200, 200]      # httpd's two, then mpm-proxy's (a 504 each before)


def test_client_header_timeout_without_mod_reqtimeout_is_timeout(tmp_path):
    """Without mod_reqtimeout httpd gives a request head Timeout to arrive (a stalled head gets
    408 after `Timeout 2`, review r06); the import used ProxyTimeout, here 15 times longer."""
    conf, out = tmp_path / "httpd.conf", tmp_path / "mpm.yaml"
    conf.write_text(preamble(str(tmp_path)) + "Listen 8080\nTimeout 2\nProxyTimeout 30\n"
                                              "ProxyPass / http://127.0.0.1:9001/\n")
    result = import_apache(str(conf), str(out))
    assert result.returncode == 0, result.stderr
    timeouts = yaml.safe_load(out.read_text())["timeouts"]
    assert (timeouts["client_header"], timeouts["proxy"], timeouts["connect"]) == (2, 30, 30)


def test_rewrite_options_inherit_down_and_ignore_inherit(tmp_path, proxy_factory, backends):
    """The main server's RewriteOptions InheritDownBefore puts its rules before every virtual
    host's own (the import ignored it: exit 0, the rules reported as not applying), and a host
    with RewriteOptions IgnoreInherit takes none of them (the import read 'IgnoreInherit' as
    holding 'inherit' and inherited them)."""
    answers, _ = differential(tmp_path, proxy_factory, backends, """
Listen 127.0.0.1:{port}
RewriteEngine On
RewriteOptions InheritDownBefore
RewriteRule ^/x/(.*) http://127.0.0.1:{C}/main/$1 [P]
<VirtualHost *:{port}>
  ServerName app.test
  RewriteRule ^/x/(.*) http://127.0.0.1:{A}/own/$1 [P]
</VirtualHost>
<VirtualHost *:{port}>
  ServerName ign.test
  RewriteOptions IgnoreInherit
  RewriteRule ^/y/(.*) http://127.0.0.1:{B}/own/$1 [P]
</VirtualHost>
""", [(p, {"host": h}) for h in ("app.test", "ign.test") for p in ("/x/1", "/y/1")])
    assert backend_of(answers) == ["C", "-", "-", "B"]


def test_virtual_host_without_servername_has_the_main_servers(tmp_path, proxy_factory, backends):
    """A virtual host without ServerName takes the main server's (`ServerName localhost` in the
    preamble), so `Host: localhost` reaches it; the import said httpd never picks it and sent
    those requests to the first virtual host."""
    answers, stderr = differential(tmp_path, proxy_factory, backends, """
Listen 127.0.0.1:{port}
<VirtualHost *:{port}>
  ServerName app.test
  ProxyPass / http://127.0.0.1:{A}/
</VirtualHost>
<VirtualHost *:{port}>
  ProxyPass / http://127.0.0.1:{B}/
</VirtualHost>
<VirtualHost *:{port}>
  ServerAlias localhost
  ProxyPass / http://127.0.0.1:{C}/
</VirtualHost>
""", [("/x", {"host": h}) for h in ("app.test", "localhost", "LOCALHOST:80", "other.test")])
    assert backend_of(answers) == ["A", "B", "B", "A"]
    assert "httpd never picks it: an earlier virtual host on the address has its names" in stderr


def test_a_request_without_host_reaches_the_default_virtual_host(tmp_path, proxy_factory, backends):
    """httpd gives an HTTP/1.0 request without Host (HAProxy's default httpchk, old monitors) to
    the default virtual host (the first for the address).  The import guards that host's routes
    with "Host is none of the other names"; a `when` condition on a missing field read nothing
    and never matched, so mpm-proxy answered 404 (review r07).  A missing field now reads as "",
    as httpd's %{HTTP:Host} does."""
    answers, stderr = differential(tmp_path, proxy_factory, backends, """
Listen 127.0.0.1:{port}
<VirtualHost *:{port}>
  ServerName app.test
  ProxyPass / http://127.0.0.1:{A}/
</VirtualHost>
<VirtualHost *:{port}>
  ServerName other.test
  ProxyPass / http://127.0.0.1:{B}/
</VirtualHost>
""", [("/health", {"host": None}), ("/x", {"host": "other.test"}), ("/y", {"host": "unknown.test"})])
    assert backend_of(answers) == ["A", "B", "A"], (answers, stderr)


def test_certificate_chain_file_says_what_to_do(tmp_path):
    """SSLCertificateChainFile was 'not translated (no mpm-proxy equivalent)': the operator was
    not told that clients lacking the intermediate then fail, nor how to keep it."""
    conf, out = tmp_path / "httpd.conf", tmp_path / "mpm.yaml"
    conf.write_text(preamble(str(tmp_path)) + "LoadModule ssl_module /usr/lib/apache2/modules/mod_ssl.so\n"
                    "Listen 8443\n<VirtualHost *:8443>\nSSLEngine on\nSSLCertificateFile /x/cert.pem\n"
                    "SSLCertificateKeyFile /x/key.pem\nSSLCertificateChainFile /x/chain.pem\n"
                    "ProxyPass / http://127.0.0.1:9001/\n</VirtualHost>\n")
    result = import_apache(str(conf), str(out))
    assert result.returncode == 0, result.stderr
    assert "not translated: SSLCertificateChainFile /x/chain.pem (mpm-proxy sends the certificates of the `cert:` " \
           "file: append this chain to it (cat cert.pem chain.pem > fullchain.pem)" in result.stderr


def test_pcre_spellings_python_reads_otherwise(tmp_path, proxy_factory, backends):
    """httpd's regexes are PCRE.  `[[:digit:]]` is a POSIX class there, and to Python's `re`
    the characters '[:dgit' then ']': the import exited 0 and routed /u/123 elsewhere.  Named
    groups `(?<id>...)` (httpd's own <LocationMatch> example) and `\\z` made it refuse the file."""
    answers, stderr = differential(tmp_path, proxy_factory, backends, r"""
Listen 127.0.0.1:{port}
RewriteEngine on
RewriteCond %{{HTTP:X-Id}} ^[[:digit:]]+$
RewriteRule "^/r/([[:alpha:]]+)\z" http://127.0.0.1:{C}/r/$1 [P]
ProxyPassMatch "^/u/([[:digit:]]+)$" http://127.0.0.1:{A}/user/$1
ProxyPassMatch "^/n/(?<id>[0-9]+)$" http://127.0.0.1:{A}/n/$1
ProxyPass / http://127.0.0.1:{B}/
""", [("/u/123", {}), ("/u/d", {}), ("/n/5", {}), ("/r/abc", {"headers": {"X-Id": "42"}}),
      ("/r/abc", {"headers": {"X-Id": "x"}}), ("/r/a1", {"headers": {"X-Id": "42"}})])
    assert backend_of(answers) == ["A", "B", "A", "C", "B", "B"]
    assert "FutureWarning" not in stderr


def test_empty_rewrite_pattern_and_empty_route_are_translated(tmp_path, proxy_factory, backends):
    """httpd takes `RewriteRule "" URL [P]` (an empty regex matches every path) and `route=` with
    nothing (a member without a route); the import wrote `match: ""` and `route: ""`, which
    its own check refused as 'a bug in the importer' (exit 2, nothing written)."""
    answers, _ = differential(tmp_path, proxy_factory, backends, """
Listen 127.0.0.1:{port}
RewriteEngine on
RewriteCond %{{HTTP:X-Go}} ^yes$
RewriteRule "" http://127.0.0.1:{A}/all [P]
<Proxy balancer://x>
  BalancerMember http://127.0.0.1:{B} route=
  BalancerMember http://127.0.0.1:{C} route=c1
</Proxy>
ProxyPass / balancer://x/ stickysession=S
""", [("/p", {"headers": {"X-Go": "yes"}}), ("/q?z=1", {"headers": {"X-Go": "yes"}}),
      ("/r", {"headers": {"Cookie": "S=x.c1"}}), ("/s", {"headers": {"Cookie": "S=x.c1"}})])
    assert [a[:2] for a, _ in answers] == [("A", "/all"), ("A", "/all?z=1"), ("C", "/r"), ("C", "/s")]
    assert backend_of(answers) == ["A", "A", "C", "C"]


@pytest.mark.parametrize("body, dead_line", [
    ("ProxyPass /app http://127.0.0.1:{A}/app\n<VirtualHost *:{port}>\n  ServerName app.test\n"
     "  ProxyPass /app http://127.0.0.1:{B}/app\n</VirtualHost>\n", "httpd.conf"),
    ("ProxyPass /app http://127.0.0.1:{A}/app\nProxyPass /app http://127.0.0.1:{B}/app\n", "httpd.conf"),
    ("<Location /app>\n  ProxyPass http://127.0.0.1:{B}/app\n</Location>\n"
     "<Location /app>\n  ProxyPass http://127.0.0.1:{A}/app\n</Location>\n", "<Location /app>"),
], ids=["main-server-and-virtual-host", "the-same-line-twice", "two-location-sections"])
def test_a_path_proxied_twice_imports_with_the_dead_one_noted(tmp_path, proxy_factory, backends, body, dead_line):
    """httpd serves the same ProxyPass path from the first of two (the main server's comes before
    a virtual host's; of two <Location> sections the last wins): the import wrote a file its own
    check refused, once mpm-proxy refused a second route with the same `match` (review
    2026-12-04-session-diff C1).  Now the dead one is dropped with a note, and both agree."""
    answers, stderr = differential(tmp_path, proxy_factory, backends, "Listen 127.0.0.1:{port}\n" + body,
                                   [("/app/x", {"host": "app.test"}), ("/app", {"host": "app.test"})])
    assert backend_of(answers) == ["A", "A"]
    assert "never used" in stderr and dead_line in stderr, stderr


def test_a_brace_that_starts_no_count_stays_text(tmp_path, proxy_factory, backends):
    """PCRE reads a "{" that starts no count (`{e}`, `{id}`) as text.  The regex module that
    mpm-proxy's workers search with reads `{e}` as a fuzzy-match constraint and refuses `{id}`,
    so the import escapes such a brace (review 2026-12-04-readme F1: it said "the translation
    does not load (this is a bug in the importer)" once configtest refused fuzzy counts)."""
    answers, stderr = differential(tmp_path, proxy_factory, backends, r"""
Listen 127.0.0.1:{port}
RewriteEngine on
RewriteCond %{{HTTP:X-Tag}} ^v{{e}}[0-9]+$
RewriteRule "^/t/(.*)" http://127.0.0.1:{A}/t/$1 [P]
ProxyPass / http://127.0.0.1:{B}/
""", [("/t/1", {"headers": {"X-Tag": "v{e}12"}}), ("/t/1", {"headers": {"X-Tag": "ve12"}}),
      ("/t/1", {"headers": {"X-Tag": "v12"}})])
    assert backend_of(answers) == ["A", "B", "B"]
