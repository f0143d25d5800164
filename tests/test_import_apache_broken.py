"""import-apache on broken httpd configurations (issue #16): each problem is reported as
`FILE:LINE: message` (the file being the one that holds it, included or not), the exit
status is 2, and nothing is written: an existing output file is left as it was."""

from __future__ import annotations

import os

import pytest
from apache_util import import_apache

pytestmark = pytest.mark.timeout(60)
HEAD = "LoadModule proxy_module modules/mod_proxy.so\nLoadModule proxy_http_module modules/mod_proxy_http.so\n" \
       "LoadModule rewrite_module modules/mod_rewrite.so\nListen 8080\n"


def broken(tmp_path, text: str, files: dict | None = None) -> tuple[str, list[str]]:
    """Import `text` (plus extra files): (the httpd.conf path, the error lines); checks that
    nothing was written over the existing output."""
    for name, content in (files or {}).items():
        os.makedirs(os.path.dirname(str(tmp_path / name)), exist_ok=True)
        (tmp_path / name).write_text(content)
    conf = str(tmp_path / "httpd.conf")
    (tmp_path / "httpd.conf").write_text(text)
    out = tmp_path / "mpm.yaml"
    out.write_text("# the previous configuration\n")
    result = import_apache(conf, str(out))
    assert result.returncode == 2, result.stderr
    assert out.read_text() == "# the previous configuration\n"
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == "import-apache: the Apache configuration has errors; nothing written"
    return conf, lines[:-1]


def test_unknown_directive_with_a_suggestion(tmp_path):
    conf, errors = broken(tmp_path, HEAD + "ProxyPas / http://127.0.0.1:9000/\n")
    assert errors == [f"{conf}:5: Invalid command 'ProxyPas', perhaps misspelled or defined by a module not "
                      "included in the server configuration (did you mean 'ProxyPass'?)"]


def test_directive_of_a_module_not_loaded(tmp_path):
    conf, errors = broken(tmp_path, HEAD + "<IfModule ssl_module>\nSSLEngine on\n</IfModule>\n"
                                           "SSLCertificateFile /x.pem\n")
    assert errors == [f"{conf}:8: Invalid command 'SSLCertificateFile': it is defined by ssl_module, which this "
                      "configuration does not load (LoadModule ssl_module ...)"]


def test_every_error_at_once(tmp_path):
    conf, errors = broken(tmp_path, HEAD + "Frobnicate on\nProxyPassMatch ^/(a http://127.0.0.1:1/\n"
                                           "RewriteEngine on\nRewriteRule ^/(b http://127.0.0.1:1/ [P]\n")
    assert [e.split(": ", 1)[0] for e in errors] == [f"{conf}:5", f"{conf}:6", f"{conf}:8"]
    assert "Invalid command 'Frobnicate'" in errors[0]
    assert "ProxyPassMatch: the regular expression '^/(a' could not be compiled: missing ) at " \
           "position 4" in errors[1]
    assert "RewriteRule: the regular expression '^/(b' could not be compiled" in errors[2]


@pytest.mark.parametrize("text,line,message", [
    ("<VirtualHost *:8080>\nProxyPass / http://127.0.0.1:1/\n", 5,
     "<VirtualHost> was not closed (no </VirtualHost> before the end of {conf})"),
    ("</Location>\n", 5, "</Location> without matching <Location> section"),
    ("<VirtualHost *:8080>\n<Location />\n</VirtualHost>\n</Location>\n", 7,
     "Expected </Location> but saw </VirtualHost>"),
    ("<IfModule nonexistent_module>\n<Location />\n</IfModule>\n", 7, "Expected </Location> but saw </IfModule>"),
    ("<Location /\n</Location>\n", 5, "<Location> directive missing closing '>'"),
], ids=["unclosed", "stray-close", "crossed", "crossed-in-skipped-ifmodule", "no-bracket"])
def test_unbalanced_sections(tmp_path, text, line, message):
    conf, errors = broken(tmp_path, HEAD + text)
    assert errors == [f"{conf}:{line}: {message.format(conf=conf)}"]


def test_missing_include_and_empty_wildcard(tmp_path):
    conf, errors = broken(tmp_path, HEAD + "Include sites/site.conf\n")
    assert errors == [f"{conf}:5: Could not open configuration file {tmp_path}/sites/site.conf: "
                      "No such file or directory"]
    conf, errors = broken(tmp_path, HEAD + "Include conf.d/*.conf\n", {"conf.d/README": "x"})
    assert errors == [f"{conf}:5: No matches for the wildcard '*.conf' in '{tmp_path}/conf.d', failing "
                      "(use IncludeOptional to allow none)"]


def test_errors_in_an_included_file_name_that_file(tmp_path):
    site = "# site\n<VirtualHost *:8080>\n    ProxyPassMatch \"^/(x\" http://127.0.0.1:1/\n</VirtualHost>\n"
    conf, errors = broken(tmp_path, HEAD + "IncludeOptional sites/*.conf\n", {"sites/app.conf": site})
    assert errors == [f"{tmp_path}/sites/app.conf:3: ProxyPassMatch: the regular expression '^/(x' could not be "
                      "compiled: missing ) at position 4"]


def test_include_loop(tmp_path):
    conf, errors = broken(tmp_path, HEAD + "Include a.conf\n", {"a.conf": "Include b.conf\n",
                                                                "b.conf": "Include a.conf\n"})
    assert errors == [f"{tmp_path}/b.conf:1: Include loop: '{tmp_path}/a.conf' includes itself (through "
                      f"{tmp_path}/a.conf -> {tmp_path}/b.conf)"]


@pytest.mark.parametrize("text,message", [
    ("<LocationMatch \"^/(r\">\nProxyPass http://127.0.0.1:1/\n</LocationMatch>\n",
     "ProxyPass: the regular expression '^/(r' could not be compiled"),
    ("RewriteEngine on\nRewriteCond %{HTTP:Upgrade} (web [NC]\nRewriteRule ^/ ws://127.0.0.1:1/ [P]\n",
     "RewriteCond: the regular expression '(web' could not be compiled"),
    ("ProxyPass /a\n", "ProxyPass needs a URL (and a path, when not inside a <Location>)"),
    ("ProxyPass /a http://127.0.0.1:1/ timeout\n", "ProxyPass: parameters must be in the form 'key=value'"),
    ("LoadModule\n", "LoadModule takes two arguments, a module name and a path"),
    ("ProxyPass / http://127.0.0.1:1/ timeuot=5\n", "ProxyPass: unknown Worker parameter 'timeuot' (httpd refuses it) "
     "(did you mean 'timeout'?)"),
    ("RewriteEngine on\nRewriteRule ^/ ws://127.0.0.1:1/ [P,LL]\n", "RewriteRule: unknown flag 'LL' (did you "
     "mean 'L'?)"),
    ("ProxyPass / balancer://c/ upgrade=websocket\n", "ProxyPass: unknown Balancer parameter 'upgrade' (httpd "
     "refuses it) (put it on the BalancerMember lines)"),
    ("<VirtualHost *:8080>\nLoadModule ssl_module modules/mod_ssl.so\n</VirtualHost>\n",
     "LoadModule cannot occur within <VirtualHost> section"),
    ("<VirtualHost *:8080>\n<Location />\nListen 9090\n</Location>\n</VirtualHost>\n",
     "Listen cannot occur within <Location> section"),
    ("<Location />\n<Location /a>\n</Location>\n</Location>\n", "<Location> cannot occur within <Location> section"),
], ids=["locationmatch", "rewritecond", "proxypass-no-url", "proxypass-param", "loadmodule", "worker-param", "flag",
        "balancer-param", "loadmodule-in-vhost", "listen-in-location",
        "nested-location"])
def test_bad_arguments(tmp_path, text, message):
    conf, errors = broken(tmp_path, HEAD + text)
    assert len(errors) == 1 and errors[0].startswith(f"{conf}:") and message in errors[0], errors


def test_missing_configuration_file(tmp_path):
    result = import_apache(str(tmp_path / "nope.conf"), str(tmp_path / "out.yaml"))
    assert result.returncode == 2 and not (tmp_path / "out.yaml").exists()
    assert result.stderr.splitlines()[0] == f"{tmp_path}/nope.conf:1: Could not open configuration file " \
                                            f"{tmp_path}/nope.conf: No such file or directory"


# == what a review found (each crashed with a traceback, or was translated wrong) ==================
@pytest.mark.parametrize("text,message", [
    ("<Location>\nProxyPass http://127.0.0.1:9001/\n</Location>\n",
     "5: <Location> directive requires additional arguments"),        # httpd's AH00526; it was a catch-all route
    ("ProxyPass /a\0b/ http://127.0.0.1:9001/\n",
     "5: a NUL byte in the line (httpd reads an argument only up to it): remove it"),      # a yaml ReaderError
    ("ProxyPass /a/ http://${NOT_DEFINED_HERE}/\n",
     "5: ProxyPass: the host '${NOT_DEFINED_HERE}' holds a '$': mpm-proxy needs the backend's host and port "
     "written out (is a ${VAR} not defined?)"),                       # "a bug in the importer", at <output>
    ('<Proxy "balancer://-1">\nBalancerMember http://127.0.0.1:9001\n</Proxy>\nProxyPass /a/ balancer://-1/\n',
     "5: balancer name '-1': mpm-proxy's begin with a letter or digit and use only letters, digits, '.', '_' "
     "and '-': rename it"),                                           # -1 went out as a YAML number
])
def test_what_httpd_refuses_or_mpm_cannot_name_is_a_file_line_error(tmp_path, text, message):
    conf, errors = broken(tmp_path, HEAD + text)
    assert f"{conf}:{message}" in errors, errors


def test_a_latin1_byte_in_a_path_goes_percent_encoded(tmp_path):
    """httpd is byte-oriented: a Latin-1 config's é in a ProxyPass path is the byte 0xE9 on the
    wire. It crashed the importer (UnicodeEncodeError)."""
    (tmp_path / "httpd.conf").write_bytes(HEAD.encode() + b"ProxyPass /caf\xe9/ http://127.0.0.1:9001/\xe9t\xe9/\n")
    out = tmp_path / "mpm.yaml"
    result = import_apache(str(tmp_path / "httpd.conf"), str(out))
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert '"/caf%E9/"' in text and '"http://127.0.0.1:9001/%E9t%E9/"' in text, text
    assert f"# {tmp_path / 'httpd.conf'}:5 ProxyPass /caf\\xe9/ http://127.0.0.1:9001/\\xe9t\\xe9/" in text, text
