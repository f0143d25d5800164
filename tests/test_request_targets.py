"""Request targets a route would not bind the way a backend resolves them (review 2026-12-03-http1
#12): a fragment, and dot segments hidden from a plain "/../" check ("..;" as Tomcat resolves it,
"..%2f"/"..%5c" for servers that decode first, "..\\" for those that take it for "/").  All get
400 and reach no backend; targets that only look like them are served as before."""

from __future__ import annotations

import pytest
from httpclient import read_raw_response
from proxyproc import running_proxy
from rawbackend import RawBackend


@pytest.fixture(scope="module")
def backend():
    b = RawBackend()
    yield b
    b.close()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, backend):
    routes = [{"match": "^(/.*\\.css)$", "to": backend.url + "/assets$1"},
              {"path": "/static", "to": backend.url + "/static"}]
    with running_proxy(tmp_path_factory.mktemp("targets"), routes, workers=1) as p:
        yield p


def _status(proxy, target: bytes) -> int:
    with proxy.connect() as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        return read_raw_response(sock).status


REFUSED = [b"/admin#.css", b"/static/x.css?q=1#frag", b"/static/../manager", b"/static/..;/manager",
           b"/static/.;/manager", b"/static/..;jsessionid=1/manager", b"/static/..%2fmanager",
           b"/static/..%2Fmanager", b"/static/%2e%2E%2Fmanager", b"/static/..%5cmanager",
           b"/static/..\\manager", b"/static\\..\\manager", b"/static/a%2f..%2f..%2fmanager", b"/static/x/.."]
SERVED = [b"/static/a..b", b"/static/..foo", b"/static/...", b"/static/v1.2/app.js;v=3",
          b"/static/x?next=..%2F..%2Fadmin", b"/static/a%2Fb", b"/static/a\\b.css", b"/static/.well-known/x",
          b"/static/%2e%2e%2e/x", b"/static/x?q=%23tag"]


def test_hidden_dot_segments_and_fragments_get_400_and_reach_no_backend(proxy, backend):
    before = len(backend.requests)
    assert {target: _status(proxy, target) for target in REFUSED} == {target: 400 for target in REFUSED}
    assert len(backend.requests) == before


def test_targets_that_only_look_like_them_are_served_byte_for_byte(proxy, backend):
    assert {target: _status(proxy, target) for target in SERVED} == {target: 200 for target in SERVED}
    assert [head.target.encode("latin-1") for head in backend.requests[-len(SERVED):]] == \
        [b"/assets" + t if t.endswith(b".css") else t for t in SERVED]
