"""conf/examples/: the seeds' Apache setups in YAML; each must load as shipped."""

from __future__ import annotations

import glob
import os

import pytest

from conf import load_config

EXAMPLES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conf", "examples")
EXAMPLES = sorted(glob.glob(os.path.join(EXAMPLES_DIR, "*.yaml")))


def load(name: str):
    return load_config(os.path.join(EXAMPLES_DIR, name))


def test_every_seed_setup_is_there():
    assert [os.path.basename(p) for p in EXAMPLES] == [
        "balancer.yaml", "proxypassmatch.yaml", "rewrite-upgrade.yaml", "websocket-only-path.yaml", "wss.yaml"]


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_example_loads(path):
    config = load_config(path)
    assert config.file == path and config.listeners
    for route in config.routes:   # everything a worker would connect to is resolved already
        if route.target.backend is not None:
            assert route.target.backend.sockaddr[0] == "127.0.0.1"


def test_websocket_only_path():
    ws, rest = load("websocket-only-path.yaml").routes
    assert ws.path == b"/ws/" and ws.target.backend.scheme == "ws" and ws.target.path == "/ws/"
    assert ws.upgrade == frozenset({"websocket"}) and ws.reverse
    assert rest.path == b"/" and rest.target.backend.scheme == "http"


def test_proxypassmatch_before_catch_all():
    match, catch_all = load("proxypassmatch.yaml").routes
    assert match.match.fullmatch(b"/myApp/ws") and not match.match.match(b"/myApp/ws/more")
    assert match.target.path == "/$1" and match.target.backend.port == 9080
    assert catch_all.path == b"/" and catch_all.target.backend.scheme == "http"


def test_rewrite_cond_on_upgrade_header():
    ws, http = load("rewrite-upgrade.yaml").routes
    assert [c.name for c in ws.when] == [b"upgrade", b"connection"]
    assert ws.when[0].pattern.search(b"WebSocket") and ws.when[1].pattern.search(b"keep-alive, Upgrade")
    assert ws.target.backend.scheme == "ws" and ws.target.path == "/$1"
    assert http.when == () and http.target.backend.scheme == "http"


def test_three_member_balancer():
    config = load("balancer.yaml")
    cluster = config.balancers["backend-cluster"]
    assert [m.backend.sockaddr for m in cluster.members] == [("127.0.0.1", p) for p in (3001, 3002, 3003)]
    assert [m.route for m in cluster.members] == ["server01", "server02", "server03"]
    assert cluster.sticky == "ROUTEID" and cluster.method == "byrequests"
    (route,) = config.routes
    assert route.target.balancer == "backend-cluster" and route.target.backend is None


def test_wss_listener_and_tls_backend():
    config = load("wss.yaml")
    tls = config.listeners[0].tls
    certs = os.path.join(EXAMPLES_DIR, "certs")
    assert tls.cert == os.path.join(certs, "example.pem") and tls.key == os.path.join(certs, "example.key")
    assert set(tls.sni) == {"localhost"}
    upgrade, plain = config.routes
    assert upgrade.target.backend.scheme == "wss" and plain.target.backend.scheme == "https"
    for route in (upgrade, plain):
        assert route.target.backend.tls.ca == os.path.join(certs, "example.pem")
        assert route.target.backend.tls.server_name == "localhost" and route.target.backend.tls.verify
