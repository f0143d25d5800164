"""import-apache gaps left by the 2026-12-03 review and closed in 2026-12-04-leftovers (#3, #4):
each test serves one httpd configuration with the real Apache httpd and, translated, with a
real mpm-proxy, sends the same requests to both, and checks where httpd sent each one (so the
test says what httpd does) and that mpm-proxy sent it to the same backend with the same path
(test_import_apache_review.differential)."""

from __future__ import annotations

import re

import pytest
from balancer_util import Member
from test_import_apache_review import differential

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def backends():
    made = {name: Member(name) for name in ("A", "B", "C")}
    yield made
    for member in made.values():
        member.close()


NO_PATH = """
Listen 127.0.0.1:{port}
<Proxy balancer://cl>
    BalancerMember http://127.0.0.1:{C}
</Proxy>
<VirtualHost *:{port}>
    ServerName app.test
    ProxyPass /b/ http://127.0.0.1:{A}
    ProxyPass /c/ balancer://cl
    <Location /loc/>
        ProxyPass http://127.0.0.1:{A}
    </Location>
    ProxyPass / http://127.0.0.1:{B}/
</VirtualHost>
<VirtualHost *:{port}>
    ServerName root.test
    ProxyPass / http://127.0.0.1:{A}
</VirtualHost>
"""


def test_proxypass_slash_to_a_url_without_a_path_serves_only_the_prefix_itself(tmp_path, proxy_factory, backends):
    """`ProxyPass /b/ http://h:p`: httpd appends the rest of the path to the URL as it is, so
    /b/x asks for host:portx (500, or 400 when it reads as a port) and only /b/ itself (with
    its query) reaches the backend, as "/".  The import sent /b/x to /x, a path httpd never
    exposed.  Now only the prefix itself is proxied, and the rest of it does not reach a later
    rule either (mpm-proxy answers 404 where httpd answers 500: neither reaches a backend);
    a warning at the line says so and how to write what was probably meant."""
    app, root = {"host": "app.test"}, {"host": "root.test"}
    served = [("/b/", app), ("/b/?q=1", app), ("/b//", app), ("/b", app), ("/c/", app), ("/c/?q=2", app),
              ("/loc/", app), ("/loc", app), ("/other/x", app), ("/", root), ("/?q=3", root)]
    refused = [("/b/x", app), ("/b/x?y=1", app), ("/b/1", app), ("/c/x", app), ("/loc/x", app), ("/x", root)]
    answers, stderr = differential(tmp_path, proxy_factory, backends, NO_PATH, served + refused)
    by_apache = [a for a, _ in answers]
    assert by_apache[:len(served)] == [
        ("A", "/", False, f"127.0.0.1:{backends['A'].port}"), ("A", "/?q=1", False, f"127.0.0.1:{backends['A'].port}"),
        ("A", "/", False, f"127.0.0.1:{backends['A'].port}"), ("B", "/b", False, f"127.0.0.1:{backends['B'].port}"),
        ("C", "/", False, f"127.0.0.1:{backends['C'].port}"), ("C", "/?q=2", False, f"127.0.0.1:{backends['C'].port}"),
        ("A", "/", False, f"127.0.0.1:{backends['A'].port}"), ("B", "/loc", False, f"127.0.0.1:{backends['B'].port}"),
        ("B", "/other/x", False, f"127.0.0.1:{backends['B'].port}"),
        ("A", "/", False, f"127.0.0.1:{backends['A'].port}"), ("A", "/?q=3", False, f"127.0.0.1:{backends['A'].port}")]
    for apache, mpm in answers[:len(served)]:
        assert mpm == apache
    for (path, _), (apache, mpm) in zip(refused, answers[len(served):], strict=True):
        assert apache[0] == "-" and apache[1] in (400, 500), (path, apache)    # host:portx
        assert mpm == ("-", 404), (path, mpm)                    # before: ('A', '/x', ...), ('B', '/b/x', ...)
    lines = (tmp_path / "httpd.conf").read_text().splitlines()
    for text, prefix in (("ProxyPass /b/", "/b/"), ("ProxyPass /c/", "/c/"), ("ProxyPass http", "/loc/"),
                         ("ProxyPass / http://127.0.0.1:" + str(backends["A"].port), "/")):
        line = next(i for i, line in enumerate(lines, 1) if line.strip().startswith(text))
        assert re.search(rf"httpd\.conf:{line}: warning: ProxyPass {re.escape(prefix)} to a URL without a path: "
                         "httpd appends the rest of the path to the URL as it is", stderr), stderr
