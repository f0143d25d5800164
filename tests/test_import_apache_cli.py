"""import-apache's command line (issue #16): httpd's syntax as httpd reads it, what each
directive becomes, the report on stderr, the exit status, and where the YAML goes.

Every configuration here is read by the real `python -m mpm import-apache`, and every
YAML it writes is loaded by `python -m mpm configtest`."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import trustme
import yaml
from apache_util import import_apache
from support import ROOT

pytestmark = pytest.mark.timeout(60)
LOAD = "".join(f"LoadModule {m}_module modules/mod_{m}.so\n"
               for m in ("mpm_event", "proxy", "proxy_http", "proxy_wstunnel", "proxy_balancer", "rewrite", "alias"))


def run(tmp_path, text: str, *args: str, files: dict | None = None, env: dict | None = None,
        status: int = 0) -> tuple[dict, str, str]:
    """Import `text`: (the YAML as data, the YAML text, stderr); configtest must pass."""
    for name, content in (files or {}).items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    (tmp_path / "httpd.conf").write_text(text)
    out = str(tmp_path / "mpm.yaml")
    result = import_apache(str(tmp_path / "httpd.conf"), out, *args, env=env)
    assert result.returncode == status, result.stderr
    check = subprocess.run([sys.executable, "-m", "mpm", "configtest", "-c", out], capture_output=True, text=True,
                           timeout=30, cwd=ROOT)
    assert check.stdout.strip() == "Syntax OK", check.stderr
    with open(out) as f:
        body = f.read()
    return yaml.safe_load(body), body, result.stderr


def targets(data: dict) -> list[tuple]:
    return [(r.get("path") or r.get("match"), r["to"]) for r in data["routes"]]


def test_httpd_syntax(tmp_path):
    """Continuations, quotes, case-insensitive names, Define and ${VAR} (Define first, then the
    environment), <IfModule> by identifier and by source file (negated too), <IfDefine> with
    -D, <IfVersion>, Include with a glob relative to ServerRoot, IncludeOptional of nothing."""
    root = tmp_path / "root"
    text = f"""{LOAD}ServerRoot {root}
Define backend 127.0.0.1:9001
Listen \\
   8080
# a comment that continues \\
ProxyPass /not-a-directive http://127.0.0.1:1/
proxypass "/quoted path/" "http://${{backend}}/with space/"
PROXYPASS /env/ http://${{MPM_TEST_BACKEND}}/env/
<IfModule proxy_module>
    ProxyPass /by-id/ http://${{backend}}/a/
</IfModule>
<IfModule !mod_proxy.c>
    ProxyPass /negated/ http://${{backend}}/b/
</IfModule>
<IfModule mod_ssl.c>
    SSLEngine on
</IfModule>
<IfDefine STAGING>
    ProxyPass /staging/ http://${{backend}}/s/
</IfDefine>
<IfDefine !STAGING>
    ProxyPass /production/ http://${{backend}}/p/
</IfDefine>
<IfVersion >= 2.4>
    ProxyPass /v24/ http://${{backend}}/v/
</IfVersion>
Include sites/*.conf
IncludeOptional optional/*.conf
IncludeOptional missing.conf
"""
    files = {"root/sites/b.conf": "ProxyPass /b/ http://127.0.0.1:9002/b/\n",
             "root/sites/a.conf": "ProxyPass /a/ http://127.0.0.1:9002/a/\n",
             "root/sites/a.conf.disabled": "ProxyPass /disabled/ http://127.0.0.1:9002/\n"}
    data, body, _ = run(tmp_path, text, "-D", "STAGING", files=files, env={"MPM_TEST_BACKEND": "127.0.0.1:9003"})
    assert data["listen"] == ["0.0.0.0:8080"]
    assert targets(data) == [
        ("/quoted%20path/", "http://127.0.0.1:9001/with%20space/"), ("/env/", "http://127.0.0.1:9003/env/"),
        ("/by-id/", "http://127.0.0.1:9001/a/"), ("/staging/", "http://127.0.0.1:9001/s/"),
        ("/v24/", "http://127.0.0.1:9001/v/"), ("/a/", "http://127.0.0.1:9002/a/"),
        ("/b/", "http://127.0.0.1:9002/b/")]
    assert f"{root}/sites/a.conf:1" in body


def test_every_route_names_its_source(tmp_path):
    text = LOAD + "Listen 8080\nProxyPass /a/ http://127.0.0.1:9001/\nRewriteEngine on\n" \
                  "RewriteCond %{HTTP:Upgrade} websocket [NC]\nRewriteRule ^/(.*) ws://127.0.0.1:9002/$1 [P]\n" \
                  "<Location /l/>\n  ProxyPass http://127.0.0.1:9003/\n</Location>\n"
    data, body, _ = run(tmp_path, text)
    lines = body.splitlines()
    conf = tmp_path / "httpd.conf"
    starts = [i for i, line in enumerate(lines) if line.startswith("  - ") and "routes:" in "\n".join(lines[:i])]
    sources = []
    for i in starts:
        j = i - 1
        while lines[j].startswith("  # "):
            j -= 1
        sources.append(lines[j + 1])
    assert sources == [f"  # {conf}:12 RewriteRule ^/(.*) ws://127.0.0.1:9002/$1 [P]",
                       f"  # {conf}:13 <Location /l/>", f"  # {conf}:9 ProxyPass /a/ http://127.0.0.1:9001/"]
    assert len(data["routes"]) == 3


def test_report_and_exit_status(tmp_path):
    """Notes are `FILE:LINE: not translated: <directive> (<why>)`; 0 unless something that
    decides where a request goes was left out; --strict: 1 for any note."""
    conf = tmp_path / "httpd.conf"
    quiet = LOAD + "Listen 8080\nServerAdmin root@example.com\nProxyPass / http://127.0.0.1:9001/\n"
    _, _, stderr = run(tmp_path, quiet)
    assert f"{conf}:9: not translated: ServerAdmin root@example.com (no mpm-proxy equivalent)" in stderr.splitlines()
    run(tmp_path, quiet, "--strict", status=1)
    routing = LOAD + "Listen 8080\nRedirect /old https://example.com/new\nProxyPass / http://127.0.0.1:9001/\n"
    _, _, stderr = run(tmp_path, routing, status=1)
    assert f"{conf}:9: not translated: Redirect /old https://example.com/new (mpm-proxy does not answer with " \
           "redirects)" in stderr.splitlines()
    every = [line for line in stderr.splitlines() if line]
    assert all(re.match(rf"^{re.escape(str(conf))}:\d+: (not translated|warning): ", line) for line in every), every


def test_yaml_on_stdout_without_o(tmp_path):
    (tmp_path / "httpd.conf").write_text(LOAD + "Listen 8080\nProxyPass / http://127.0.0.1:9001/\n")
    result = import_apache(str(tmp_path / "httpd.conf"))
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["routes"] == [{"path": "/", "to": "http://127.0.0.1:9001/", "upgrade": []}]


def test_a_site_file_alone_is_read_as_a_fragment(tmp_path):
    """No LoadModule at all (e.g. a sites-available file): every module counts as loaded."""
    text = "Listen 8443\n<VirtualHost *:8443>\n  <IfModule mod_proxy_wstunnel.c>\n" \
           "    ProxyPass /ws/ ws://127.0.0.1:9001/ws/\n  </IfModule>\n</VirtualHost>\n"
    data, _, stderr = run(tmp_path, text)
    assert targets(data) == [("/ws/", "ws://127.0.0.1:9001/ws/")]
    assert "warning: no LoadModule lines: read as a fragment" in stderr


def test_server_settings(tmp_path):
    (tmp_path / "logs").mkdir()          # as httpd, mpm opens its logs there: the directory must exist
    text = LOAD + f"""Listen 127.0.0.1:8080
Listen [::1]:8081
ServerRoot {tmp_path}
PidFile run/httpd.pid
ErrorLog logs/error.log
LogFormat "%h %l %u %t \\"%r\\" %>s %b \\"%{{Referer}}i\\" \\"%{{User-Agent}}i\\"" combined
CustomLog logs/access.log combined
LogLevel notice proxy:debug
Timeout 90
KeepAliveTimeout 500ms
LimitRequestLine 4096
LimitRequestFieldSize 2048
LimitRequestFields 50
LimitRequestBody 1048576
<IfModule mpm_event_module>
    StartServers 4
    ServerLimit 8
    ThreadsPerChild 200
    MaxRequestWorkers 2000
    MaxConnectionsPerChild 10000
    GracefulShutdownTimeout 15
</IfModule>
ProxyPass / http://127.0.0.1:9001/ connectiontimeout=3 timeout=120
"""
    data, _, stderr = run(tmp_path, text)
    assert data["listen"] == ["127.0.0.1:8080", "[::1]:8081"]
    assert data["mpm"] == {"workers": 4, "server_limit": 8, "threads_per_child": 200, "max_request_workers": 1600,
                           "max_connections_per_child": 10000, "graceful_timeout": 15}
    assert "MaxRequestWorkers 2000 lowered to 1600 (MaxRequestWorkers cannot exceed ServerLimit x " \
           "ThreadsPerChild, as httpd does)" in stderr
    assert data["timeouts"] == {"proxy": 90, "connect": 3, "keepalive": 0.5, "client_header": 90}
    assert data["routes"][0]["timeout"] == 120
    assert data["limits"] == {"request_line": 4096, "header_field": 2048, "header_fields": 50,
                              "request_body": 1048576}
    assert data["log"] == {"error": f"{tmp_path}/logs/error.log", "level": "info",
                           "access": f"{tmp_path}/logs/access.log", "format": "combined"}
    assert data["control"] == {"pidfile": f"{tmp_path}/run/mpm-proxy.pid", "socket": f"{tmp_path}/run/mpm-proxy.sock"}
    assert "LogLevel notice proxy:debug (per-module levels: mpm-proxy has one level)" in stderr


def test_balancer_parameters(tmp_path):
    text = LOAD + """LoadModule headers_module modules/mod_headers.so
LoadModule proxy_hcheck_module modules/mod_proxy_hcheck.so
Listen 8080
ProxyHCExpr ok234 {%{REQUEST_STATUS} =~ /^[234]/}
Header add Set-Cookie "SRV=.%{BALANCER_WORKER_ROUTE}e; path=/" env=BALANCER_ROUTE_CHANGED
<Proxy balancer://app>
    BalancerMember http://127.0.0.1:9001 route=a loadfactor=3 retry=30 hcmethod=GET hcuri=/health hcexpr=ok234 hcinterval=5 hcpasses=2 hcfails=3
    BalancerMember http://127.0.0.1:9002 route=b max=100 retry=30 hcmethod=GET hcuri=/health hcexpr=ok234 hcinterval=5 hcpasses=2 hcfails=3
    BalancerMember http://127.0.0.1:9003 route=c status=+H retry=30 hcmethod=GET hcuri=/health hcexpr=ok234 hcinterval=5 hcpasses=2 hcfails=3
    ProxySet lbmethod=bybusyness stickysession=SRV nofailover=On failonstatus=502,503
</Proxy>
ProxyPass / balancer://app/
"""
    data, _, stderr = run(tmp_path, text, status=0)
    assert data["balancers"] == {"app": {
        "method": "bybusyness", "sticky": {"cookie": "SRV", "insert": True}, "nofailover": True,
        "failonstatus": [502, 503], "retry": 30,
        "health": {"method": "GET", "path": "/health", "expect": "^[234]", "interval": 5, "passes": 2, "fails": 3},
        "members": [{"url": "http://127.0.0.1:9001", "weight": 3, "route": "a"},
                    {"url": "http://127.0.0.1:9002", "route": "b", "max_connections": 100},
                    {"url": "http://127.0.0.1:9003", "route": "c", "status": "hot-standby"}]}}
    assert data["routes"] == [{"path": "/", "to": "balancer://app/", "upgrade": []}]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    ca, directory = trustme.CA(), tmp_path_factory.mktemp("certs")
    out = {}
    for name in ("default.test", "api.test"):
        issued = ca.issue_cert(name)
        cert, key = str(directory / f"{name}.pem"), str(directory / f"{name}.key")
        issued.cert_chain_pems[0].write_to_path(cert)
        issued.private_key_pem.write_to_path(key)
        out[name] = (cert, key)
    return out


def test_name_based_tls_virtual_hosts_become_sni(tmp_path, pairs):
    (dcert, dkey), (acert, akey) = pairs["default.test"], pairs["api.test"]
    text = LOAD + f"""LoadModule ssl_module modules/mod_ssl.so
Listen 8443 https
<VirtualHost *:8443>
    ServerName default.test
    SSLEngine on
    SSLCertificateFile {dcert}
    SSLCertificateKeyFile {dkey}
    ProxyPass / http://127.0.0.1:9001/
</VirtualHost>
<VirtualHost *:8443>
    ServerName api.test
    SSLEngine on
    SSLCertificateFile {acert}
    SSLCertificateKeyFile {akey}
    ProxyPass / http://127.0.0.1:9002/
</VirtualHost>
"""
    data, _, _ = run(tmp_path, text)
    assert data["listen"] == [{"address": "0.0.0.0:8443", "tls": {
        "cert": dcert, "key": dkey, "sni": {"default.test": {"cert": dcert, "key": dkey},
                                            "api.test": {"cert": acert, "key": akey}}}}]
    host = r"^(?:api\.test)\.?(?::[0-9]+)?$"
    assert data["routes"] == [
        {"path": "/", "when": {"header": {"Host": host}}, "to": "http://127.0.0.1:9002/", "upgrade": []},
        {"path": "/", "when": {"header": {"Host": f"^(?!{host[1:]})"}}, "to": "http://127.0.0.1:9001/",
         "upgrade": []}]


def test_a_client_certificate_required_by_one_virtual_host_guards_its_whole_listener(tmp_path, pairs):
    """httpd checks SSLVerifyClient per virtual host, and answers 421 to a request whose Host
    selects a virtual host with other TLS settings than the SNI name did (ssl_hook_ReadReq,
    AH02032): the open site's clients never reach the guarded one without a certificate.
    mpm-proxy's client_ca is per listener, so the listener requires client certificates for
    both (refusing some clients httpd serves rather than serving some httpd refuses), and the
    import says so and exits 1.  Two virtual hosts requiring certificates from different CA
    files cannot be translated at all (exit 2, nothing written)."""
    (dcert, dkey), (acert, akey) = pairs["default.test"], pairs["api.test"]
    clients = tmp_path / "clients.pem"
    clients.write_bytes(trustme.CA().cert_pem.bytes())
    guarded = f"""    SSLVerifyClient require
    SSLCACertificateFile {clients}
"""
    text = LOAD + f"""LoadModule ssl_module modules/mod_ssl.so
Listen 8443 https
<VirtualHost *:8443>
    ServerName default.test
    SSLEngine on
    SSLCertificateFile {dcert}
    SSLCertificateKeyFile {dkey}
    ProxyPass / http://127.0.0.1:9001/
</VirtualHost>
<VirtualHost *:8443>
    ServerName api.test
    SSLEngine on
    SSLCertificateFile {acert}
    SSLCertificateKeyFile {akey}
{guarded}    ProxyPass / http://127.0.0.1:9002/
</VirtualHost>
"""
    data, _, stderr = run(tmp_path, text, status=1)
    assert data["listen"][0]["tls"]["client_ca"] == str(clients)
    assert f"{tmp_path}/httpd.conf:10: warning: <VirtualHost *:8443> ({tmp_path}/httpd.conf:10) has no " \
           "SSLVerifyClient require but shares a TLS listener with" in stderr, stderr
    other = tmp_path / "other.pem"
    other.write_bytes(trustme.CA().cert_pem.bytes())
    both = text.replace("    ServerName default.test\n", f"    ServerName default.test\n{guarded}".replace(
        str(clients), str(other)))
    (tmp_path / "httpd.conf").write_text(both)
    result = import_apache(str(tmp_path / "httpd.conf"), str(tmp_path / "two.yaml"))
    assert result.returncode == 2 and not (tmp_path / "two.yaml").exists()      # an error: nothing written
    assert "require client certificates from different SSLCACertificateFile" in result.stderr, result.stderr


def test_a_request_header_httpd_overwrites_is_reported_as_forgeable(tmp_path):
    """`RequestHeader set X-Remote-User ...` (or `unset`) replaces what the client sent: the
    backend can trust it.  mpm-proxy edits no headers, so without it the backend gets the
    client's own header of that name: a client can forge its identity.  That is access control
    lost (exit 1), as a dropped Require is; `add` keeps the client's value beside httpd's, so
    dropping it loses nothing the backend could have trusted."""
    text = LOAD + """LoadModule headers_module modules/mod_headers.so
Listen 8080
<VirtualHost *:8080>
    RequestHeader set X-Remote-User "%{REMOTE_USER}s"
    RequestHeader unset X-Remote-Group
    RequestHeader add X-Trace on
    ProxyPass / http://127.0.0.1:9001/
</VirtualHost>
"""
    _, _, stderr = run(tmp_path, text, status=1)
    for line, name in ((11, "X-Remote-User"), (12, "X-Remote-Group")):
        assert f"{tmp_path}/httpd.conf:{line}: not translated: RequestHeader" in stderr
        assert f"the backend gets {name} as the client sent it" in stderr, stderr
    _, _, stderr = run(tmp_path, text.replace("    RequestHeader set", "    #").replace("    RequestHeader unset", "    #"))
    assert "RequestHeader add X-Trace on (mpm-proxy does not edit headers)" in stderr


def test_the_client_certificate_fields_mod_ssl_passes_are_what_mpm_sets_itself(tmp_path, pairs):
    """With a listener requiring client certificates, mpm-proxy sets X-SSL-Client-Verify, -S-DN,
    -I-DN and -Serial from mod_ssl's variables and drops every X-SSL-Client-* a client sends
    (worker.clientcert): Apache's usual lines for them change nothing (exit 0).  Another
    X-SSL-Client-* field, or another value, is one the backend no longer gets as httpd gave it:
    a change in who gets in (exit 1), though not a forgeable one.  Without such a listener
    mpm-proxy leaves the fields alone: forgeable, as any other."""
    cert, key = pairs["default.test"]
    clients = tmp_path / "clients.pem"
    clients.write_bytes(trustme.CA().cert_pem.bytes())
    lines = """    RequestHeader set X-SSL-Client-S-DN "%{SSL_CLIENT_S_DN}s"
    RequestHeader set X-SSL-Client-I-DN "%{SSL_CLIENT_I_DN}s"
    RequestHeader set X-SSL-Client-Serial "%{SSL_CLIENT_M_SERIAL}s"
    RequestHeader set X-SSL-Client-Verify "%{SSL_CLIENT_VERIFY}s"
    RequestHeader unset X-SSL-Client-Cert
"""
    text = LOAD + f"""LoadModule headers_module modules/mod_headers.so
LoadModule ssl_module modules/mod_ssl.so
Listen 8443 https
<VirtualHost *:8443>
    SSLEngine on
    SSLCertificateFile {cert}
    SSLCertificateKeyFile {key}
    SSLVerifyClient require
    SSLCACertificateFile {clients}
LINES    ProxyPass / http://127.0.0.1:9001/
</VirtualHost>
"""
    data, _, stderr = run(tmp_path, text.replace("LINES", lines))
    assert data["listen"][0]["tls"]["client_ca"] == str(clients)
    assert "mpm-proxy sets X-SSL-Client-S-DN to %{SSL_CLIENT_S_DN}s itself on a listener with client_ca" in stderr
    assert "drops every X-SSL-Client-* field a client sends, X-SSL-Client-Cert included" in stderr
    assert "forge" not in stderr, stderr
    other = '    RequestHeader set X-SSL-Client-CN "%{SSL_CLIENT_S_DN_CN}s"\n'
    _, _, stderr = run(tmp_path, text.replace("LINES", lines + other), status=1)
    assert "the backend gets no X-SSL-Client-CN" in stderr, stderr
    early = lines.replace('"%{SSL_CLIENT_S_DN}s"', '"%{SSL_CLIENT_S_DN}s" early')   # when, not what
    _, _, stderr = run(tmp_path, text.replace("LINES", early))
    assert "to %{SSL_CLIENT_S_DN}s itself on a listener with client_ca (early aside: on every request)" in stderr
    moved = '    RequestHeader set X-SSL-Client-S-DN "%{SSL_CLIENT_S_DN_CN}s"\n'
    _, _, stderr = run(tmp_path, text.replace("LINES", moved), status=1)
    assert "sets X-SSL-Client-S-DN to %{SSL_CLIENT_S_DN}s (not %{SSL_CLIENT_S_DN_CN}s)" in stderr, stderr
    unguarded = text.replace("LINES", lines).replace("    SSLVerifyClient require\n", "")
    _, _, stderr = run(tmp_path, unguarded, status=1)
    assert "the backend gets X-SSL-Client-S-DN as the client sent it, so a client can forge it" in stderr, stderr


def test_listeners_that_would_need_other_routes_are_reported(tmp_path):
    text = LOAD + """Listen 8080
Listen 8081
<VirtualHost *:8080>
    ProxyPass / http://127.0.0.1:9001/
</VirtualHost>
<VirtualHost *:8081>
    Redirect / https://example.com/
</VirtualHost>
"""
    data, _, stderr = run(tmp_path, text, status=1)
    assert data["listen"] == ["0.0.0.0:8080"]
    assert f"{tmp_path}/httpd.conf:9: not translated: Listen 8081 (its virtual hosts route requests differently " \
           "from the listener kept, and mpm-proxy has one route list for all listeners)" in stderr


def test_proxypass_forms(tmp_path):
    """Trailing slashes as httpd maps them, `!`, ProxyPassMatch with $N past the groups, `~`."""
    text = LOAD + """Listen 8080
ProxyPass /a http://127.0.0.1:9001/x
ProxyPass /b/ http://127.0.0.1:9001
ProxyPass /c http://127.0.0.1:9001
ProxyPass ~ ^/d/(.*)$ http://127.0.0.1:9001/d/$1/$2
ProxyPass /e/private !
ProxyPass /e/ http://127.0.0.1:9002/
"""
    data, _, stderr = run(tmp_path, text)
    assert targets(data) == [
        ("^/a((?:/.*)?)$", "http://127.0.0.1:9001/x$1"),
        ("^/b/$", "http://127.0.0.1:9001/"),         # httpd: /b/x asks for host 127.0.0.1:9001x (500)
        ("^(?!/b/)/c(?:/(.*))?$", "http://127.0.0.1:9001/$1"),
        ("^(?!/b/).*?(?:^/d/(.*)$)", "http://127.0.0.1:9001/d/$1/"),
        ("^(?!/b/|/e/private(?=/|$))/e/(.*)", "http://127.0.0.1:9002/$1")]
    assert "ProxyPass: $2 is empty (the pattern has 1 group(s)), as in httpd" in stderr
    assert "ProxyPass /b/ to a URL without a path" in stderr


def test_a_log_directory_missing_here_is_a_warning_and_no_file_is_made(tmp_path):
    """An ErrorLog whose directory does not exist on this machine (a config imported on
    another host): the translation is written, with a warning that configtest would refuse
    it here; checking it creates no file."""
    (tmp_path / "httpd.conf").write_text(LOAD + f"Listen 8080\nServerRoot {tmp_path}\nErrorLog logs/error.log\n"
                                                "ProxyPass / http://127.0.0.1:9001/\n")
    result = import_apache(str(tmp_path / "httpd.conf"), str(tmp_path / "mpm.yaml"))
    assert result.returncode == 0, result.stderr
    assert (f"import-apache: warning: on this machine the result does not pass configtest: log.error: cannot open "
            f"{tmp_path}/logs/error.log for appending: No such file or directory") in result.stderr, result.stderr
    assert (tmp_path / "mpm.yaml").exists() and not (tmp_path / "logs").exists()


def test_ssl_session_cache_timeout_becomes_the_session_timeout(tmp_path, pairs):
    """mod_ssl resumes sessions (tickets included) for SSLSessionCacheTimeout seconds; the import
    carries the main server's value, and says a virtual host's own one is not used."""
    cert, key = pairs["default.test"]
    text = LOAD + f"""LoadModule ssl_module modules/mod_ssl.so
SSLSessionCacheTimeout 600
Listen 8443 https
<VirtualHost *:8443>
    ServerName default.test
    SSLEngine on
    SSLCertificateFile {cert}
    SSLCertificateKeyFile {key}
    SSLSessionCacheTimeout 60
    ProxyPass / http://127.0.0.1:9001/
</VirtualHost>
"""
    main_line, vhost_line = (i + 1 for i, line in enumerate(text.splitlines()) if "SSLSessionCacheTimeout" in line)
    data, yaml_text, stderr = run(tmp_path, text)
    assert data["tls"] == {"session_timeout": 600}
    assert f"httpd.conf:{main_line} SSLSessionCacheTimeout 600" in yaml_text
    dropped = [line for line in stderr.splitlines() if f"httpd.conf:{vhost_line}" in line]
    assert dropped and "one of these for all listeners" in dropped[0], stderr
