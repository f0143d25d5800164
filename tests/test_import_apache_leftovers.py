"""import-apache gaps left by the 2026-12-03 review and closed in 2026-12-03-leftovers (#3, #4):
each test serves one httpd configuration with the real Apache httpd and, translated, with a
real mpm-proxy, sends the same requests to both, and checks where httpd sent each one (so the
test says what httpd does) and that mpm-proxy sent it to the same backend with the same path
(test_import_apache_review.differential)."""

from __future__ import annotations

import re
import textwrap

import pytest
import yaml
from balancer_util import Member
from test_import_apache_review import differential

from conf import ConfigError, load_config

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


TOMCAT = """
Listen 127.0.0.1:{port}
<Proxy balancer://tc>
    BalancerMember http://127.0.0.1:{B} route=b1
    BalancerMember http://127.0.0.1:{C} route=b2
    ProxySet stickysession=JSESSIONID|jsessionid
</Proxy>
ProxyPass /s/ balancer://tc/
"""


def test_tomcat_stickysession_pair_reads_the_cookie_and_the_url_parameter_by_their_own_names(
        tmp_path, proxy_factory, backends):
    """`stickysession=JSESSIONID|jsessionid`: httpd reads the route from the cookie named by the
    first half and from the `;jsessionid=` path parameter or `?jsessionid=` query parameter named
    by the second, the URL first (mod_proxy_balancer's find_session_route).  The import kept
    JSESSIONID alone, so `;jsessionid=...b2` went round robin (4 of 9 to the other member).  Now
    it writes `sticky: {cookie: JSESSIONID, param: jsessionid}`, which mpm-proxy reads as httpd
    does.  Each request goes three times: a round robin would split them."""
    def cookie(value: str) -> dict:
        return {"headers": {"Cookie": value}}
    sticky = [("/s/x;jsessionid=abc.b2", {}), ("/s/x;jsessionid=abc.b1", {}), ("/s/x?jsessionid=abc.b2", {}),
              ("/s/y;jsessionid=A1B2.b2?q=1", {}), ("/s/x", cookie("JSESSIONID=abc.b2")),
              ("/s/x", cookie("JSESSIONID=abc.b1")), ("/s/x;jsessionid=abc.b1", cookie("JSESSIONID=abc.b2"))]
    requests = [r for r in sticky for _ in range(3)]
    answers, stderr = differential(tmp_path, proxy_factory, backends, TOMCAT, requests)
    expected = ["C", "B", "C", "C", "C", "B", "B"]
    assert [a[0] for a, _ in answers] == [e for e in expected for _ in range(3)]       # what httpd does
    assert [m for _, m in answers] == [a for a, _ in answers]
    assert "stickysession=" not in stderr, stderr      # translated whole: nothing to warn about
    generated = yaml.safe_load((tmp_path / "mpm.yaml").read_text())
    assert generated["balancers"]["tc"]["sticky"] == {"cookie": "JSESSIONID", "param": "jsessionid"}


def test_sticky_param_is_checked_like_the_cookie_name_and_listed(tmp_path, proxy_factory):
    path = tmp_path / "sticky.yaml"
    path.write_text(textwrap.dedent("""\
        listen: ["127.0.0.1:8000"]
        balancers:
          app:
            sticky: {cookie: JSESSIONID, param: "js id"}
            members: [{url: "http://127.0.0.1:9001", route: a}]
        routes:
          - {path: /, to: "balancer://app/"}
        """))
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert info.value.errors == [f"{path}:4: balancers.app.sticky.param 'js id' is not a valid URL parameter name"], \
        info.value.errors
    path.write_text(path.read_text().replace('"js id"', "jsessionid"))
    balancer = load_config(str(path)).balancers["app"]
    assert (balancer.sticky, balancer.sticky_param, balancer.sticky_insert) == ("JSESSIONID", "jsessionid", False)
    proxy = proxy_factory([{"path": "/", "to": "balancer://app/"}], workers=1, balancers={"app": {
        "sticky": {"cookie": "JSESSIONID", "param": "jsessionid"},
        "members": [{"url": "http://127.0.0.1:9", "route": "a"}]}})
    assert "sticky JSESSIONID|jsessionid " in proxy.mpmctl("balancer").stdout
