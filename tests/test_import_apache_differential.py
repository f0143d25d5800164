"""import-apache against the real thing (issue #16): one httpd configuration is served by
Apache httpd (Debian's apache2) and, translated by `mpmctl import-apache`, by mpm-proxy;
the same corpus of requests goes to both, and each request must reach the same backend
with the same path and the same Host header, and arrive as an upgrade at both or as plain
HTTP at both.

The configuration uses what the importer translates: [P] rewrite rules on Upgrade headers
(with [OR], [NC], `=`, `!`, %{HTTP_HOST} and %{REQUEST_URI}), ProxyPass with and without
trailing slashes, `!` exclusions, ProxyPassMatch (with and without $N), <Location> and
<LocationMatch> ProxyPass (where the last matching section wins over the server-level
rules), upgrade= on http://, ws:// targets, balancers with sticky routes, and two
name-based virtual hosts (one with ProxyPreserveHost On).  The requests cover both sides
of every rule, with and without Upgrade headers, and the worker sharing that decides which
upgrade= applies (a ProxyPass or [P] URL that starts with an earlier ProxyPass URL uses
that worker and its parameters).

Backends are `balancer_util.Member`s: each records the path it was asked for and whether
the request asked to upgrade, answers plain requests with its name and echoes WebSocket
messages after a 101.  Requests run one at a time, so "the backend whose log grew" is the
one the request reached.
"""

from __future__ import annotations

import os

import pytest
import yaml
from apache_util import APACHE, Apache, import_apache, preamble, reached
from balancer_util import Member
from proxyproc import running_proxy
from support import free_port

pytestmark = pytest.mark.timeout(90)

CONFIG = """
Listen 127.0.0.1:{port}
ProxyTimeout 20
ProxyPass /shared/ http://127.0.0.1:{A}/shared/

<Proxy balancer://cluster>
    BalancerMember http://127.0.0.1:{B1} route=b1
    BalancerMember http://127.0.0.1:{B2} route=b2
    ProxySet lbmethod=byrequests stickysession=ROUTEID
</Proxy>
<Proxy "balancer://Live">
    BalancerMember ws://127.0.0.1:{B1} route=b1
    BalancerMember ws://127.0.0.1:{B2} route=b2
    ProxySet stickysession=ROUTEID
</Proxy>

<VirtualHost *:{port}>
    ServerName app.test
    RewriteEngine On
    RewriteCond %{{HTTP:Upgrade}} websocket [NC]
    RewriteCond %{{HTTP:Connection}} upgrade [NC]
    RewriteRule ^/live/(.*) ws://127.0.0.1:{W}/live/$1 [P,L]
    RewriteCond %{{HTTP:Upgrade}} =websocket [NC]
    RewriteCond %{{REQUEST_URI}} !^/any/skip
    RewriteRule ^/any/ "ws://127.0.0.1:{W}%{{REQUEST_URI}}" [P,L]
    RewriteCond %{{HTTP:X-Tunnel}} ^yes$ [OR]
    RewriteCond %{{HTTP:Upgrade}} ^WebSocket$
    RewriteRule ^/either/(.*)$ ws://127.0.0.1:{W}/either/$1 [P]
    RewriteRule ^/rwshare/(.*) http://127.0.0.1:{S}/rw/$1 [P]
    RewriteCond %{{HTTP_HOST}} ^ws\\.app\\.test$ [NC]
    RewriteRule ^/hostws/(.*) ws://127.0.0.1:{W}/h/$1 [P,NC]
    RewriteCond %{{HTTP:X-Neg}} ^1$
    RewriteRule !^/keep/ ws://127.0.0.1:{W}/neg [P]

    ProxyPass /static !
    ProxyPassMatch ^/(myApp/ws)$ ws://127.0.0.1:{W}/$1
    ProxyPassMatch \\.png$ http://127.0.0.1:{C}/images
    ProxyPass /ws/ ws://127.0.0.1:{W}/ws/
    ProxyPass /app http://127.0.0.1:{A}/application
    ProxyPass /chat/ http://127.0.0.1:{A}/chat/ upgrade=websocket
    ProxyPass /bal/ balancer://cluster/
    ProxyPassReverse /bal/ balancer://cluster/
    ProxyPass /stream/ balancer://live/stream/
    ProxyPass /api/ http://127.0.0.1:{A}/v1/
    ProxyPass /shareA/ http://127.0.0.1:{S}/ upgrade=websocket
    ProxyPass /shareB/ http://127.0.0.1:{S}/b/
    ProxyPass /shareC/ http://127.0.0.1:{S}/c/
    ProxyPass /shareD/ http://127.0.0.1:{S}/c/d/ upgrade=websocket
    <Location /api/>
        ProxyPass http://127.0.0.1:{C}/v2/
    </Location>
    <Location /admin/>
        ProxyPass http://127.0.0.1:{C}/console/
    </Location>
    <Location /admin/private/>
        ProxyPass !
    </Location>
    <LocationMatch "^/report/([0-9]+)$">
        ProxyPass http://127.0.0.1:{C}/reports/$1
    </LocationMatch>
    ProxyPass / http://127.0.0.1:{A}/
</VirtualHost>

<VirtualHost *:{port}>
    ServerName other.test
    ServerAlias www.other.test
    ProxyPreserveHost On
    ProxyPass /only-other/ http://127.0.0.1:{C}/o/
</VirtualHost>
"""

WS, NOCONN = {"ws": True}, {"ws": True, "connection": "keep-alive"}
ROUTE1, ROUTE2 = {"headers": {"Cookie": "ROUTEID=x.b1"}}, {"headers": {"Cookie": "ROUTEID=x.b2"}}

# (path, options): options are reached()'s keywords (host defaults to app.test); "any": a
# balancer request without a sticky route, which either member may take in either server.
CORPUS = [
    ("/live/room1", WS), ("/live/room1", {}), ("/live/room1", NOCONN), ("/live/room1?t=1", WS),
    ("/LIVE/room1", WS), ("/live/room1", {"ws": True, "headers": {}, "host": "APP.TEST"}),
    ("/any/thing", WS), ("/any/thing", {}), ("/any/skip/this", WS), ("/any/x?q=2", WS),
    ("/either/a", {"headers": {"X-Tunnel": "yes"}}), ("/either/b", WS), ("/either/c", {}),
    ("/either/d", {"headers": {"X-Tunnel": "YES"}}),
    ("/static", {}), ("/static/app.css", {}), ("/static/img/a.png", {}), ("/staticfile", {}),
    ("/myApp/ws", WS), ("/myApp/ws", {}), ("/myApp/ws/more", WS), ("/myapp/ws", WS),
    ("/pics/a.png", {}), ("/pics/a.png?size=2", {}), ("/pics/a.pngx", {}),
    ("/ws/echo", WS), ("/ws/echo", {}), ("/ws", WS), ("/wsx/echo", WS),
    ("/app", {}), ("/app/", {}), ("/app/x/y", {}), ("/apple", {}), ("/app?x=1", {}), ("/app", WS),
    ("/chat/room", WS), ("/chat/room", {}), ("/chat", WS),
    ("/bal/x", ROUTE1), ("/bal/x", ROUTE2), ("/bal/y", {"ws": True, **ROUTE2}), ("/bal/z", {"any": True}),
    ("/bal/q?ROUTEID=.b2", {}), ("/bal/", {"any": True}), ("/bal", {}),
    ("/stream/s1", {"ws": True, **ROUTE1}), ("/stream/s2", {"ws": True, **ROUTE2}), ("/stream/s3", ROUTE1),
    ("/api/users", {}), ("/api", {}), ("/api/users", WS),
    ("/admin/", {}), ("/admin/users", {}), ("/admin", {}), ("/admin/private/keys", {}),
    ("/admin/private", {}), ("/admin/privateer", {}),
    ("/report/42", {}), ("/report/abc", {}), ("/report/42/x", {}),
    ("/shareA/x", WS), ("/shareB/x", WS), ("/shareC/x", WS), ("/shareD/x", WS), ("/rwshare/x", WS),
    ("/rwshare/x", {}),
    ("/hostws/a", {"host": "ws.app.test", "ws": True}), ("/HOSTWS/a", {"host": "WS.App.Test:80", "ws": True}),
    ("/hostws/a", {"ws": True}), ("/x/y?z=1", {"headers": {"X-Neg": "1"}}), ("/keep/y", {"headers": {"X-Neg": "1"}}),
    ("/shared/z", {}), ("/", {}), ("/other", WS), ("/other?x=%41", {}),
    ("/only-other/p", {"host": "other.test"}), ("/only-other/p", {"host": "www.other.test", "ws": True}),
    ("/only-other/p", {"host": "OTHER.test:8080"}), ("/shared/q", {"host": "other.test"}),
    ("/", {"host": "other.test"}), ("/app/x", {"host": "other.test"}), ("/only-other/p", {}),
    ("/live/room1", {"host": "other.test", "ws": True}), ("/app/x", {"host": "unknown.test"}),
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    if not os.path.exists(APACHE):
        reason = "Apache httpd (apache2) is not installed (Debian: apt-get install apache2)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}, and CI is set: CI must run this test")
        pytest.skip(reason)
    directory = str(tmp_path_factory.mktemp("differential"))
    members = {name: Member(name) for name in ("A", "B1", "B2", "C", "S", "W")}
    port = free_port()
    conf = os.path.join(directory, "httpd.conf")
    with open(conf, "w") as f:
        f.write(preamble(directory) + CONFIG.format(port=port, **{k: m.port for k, m in members.items()}))
    out = os.path.join(directory, "mpm.yaml")
    result = import_apache(conf, out)
    assert result.returncode == 0, result.stderr
    with open(out) as f:
        generated = yaml.safe_load(f)
    apache = Apache(conf, [port]).start()
    try:
        sections = {k: v for k, v in generated.items() if k not in ("listen", "control", "log", "routes")}
        with running_proxy(os.path.join(directory, "mpm"), generated["routes"], **sections) as proxy:
            yield {"members": list(members.values()), "apache": port, "mpm": proxy.port, "result": result,
                   "generated": generated}
    finally:
        apache.stop()
        for m in members.values():
            m.close()


@pytest.mark.parametrize("path,options", CORPUS, ids=[f"{p} {o}" for p, o in CORPUS])
def test_same_backend_and_path(setup, path, options):
    options = {"host": "app.test", **options}
    any_member = options.pop("any", False)
    by_apache = reached(setup["members"], setup["apache"], path, **options)
    by_mpm = reached(setup["members"], setup["mpm"], path, **options)
    if any_member:
        assert by_apache[0] in ("B1", "B2") and by_mpm[0] in ("B1", "B2")
        assert by_apache[1:3] == by_mpm[1:3]      # path and upgrade (Host names the member each chose)
        return
    assert by_mpm == by_apache


def test_corpus_covers_the_issue(setup):
    """At least 50 requests; every backend reached, some as upgrades, some answered locally."""
    assert len(CORPUS) >= 50
    answers = [reached(setup["members"], setup["apache"], p,
                       **{"host": "app.test", **{k: v for k, v in o.items() if k != "any"}}) for p, o in CORPUS]
    assert {a[0] for a in answers} >= {"A", "B1", "B2", "C", "W", "-"}
    assert any(a[0] != "-" and a[2] for a in answers) and any(a[0] != "-" and not a[2] for a in answers)


def test_documented_differences(setup):
    """Where the two differ by design (README, "Migrating from Apache"): httpd decodes the path,
    merges repeated slashes and re-encodes what it sends; mpm-proxy matches and forwards the
    path byte for byte.  Both still pick the same backend here."""
    members, apache, mpm = setup["members"], setup["apache"], setup["mpm"]
    assert reached(members, apache, "/app/%41b", host="app.test")[:2] == ("A", "/application/Ab")
    assert reached(members, mpm, "/app/%41b", host="app.test")[:2] == ("A", "/application/%41b")
    assert reached(members, apache, "/app//x", host="app.test")[:2] == ("A", "/application/x")
    assert reached(members, mpm, "/app//x", host="app.test")[:2] == ("A", "/application//x")
