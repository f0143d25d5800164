"""Targets are routed as nginx and Apache match locations (review 2026-12-03-rewrite #2): in the
path, an escape of an unreserved character is that character and a run of "/" is one, so
"/%6cogin" and "//login" meet the /login route (and its per-client limit) instead of slipping to
"/", whose backend reads them as /login all the same.  A target that meets the same route either
way still goes on byte for byte."""

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
    routes = [{"path": "/login", "to": backend.url + "/L/login", "per_client": {"requests": {"rate": "1/m", "burst": 2}}},
              {"path": "/%7Euser/", "to": backend.url + "/home/"},
              {"path": "/admin/", "to": backend.url + "/A/"},
              {"match": "^/re/(.*)$", "to": backend.url + "/R/$1"},
              {"path": "/", "to": backend.url + "/"}]
    with running_proxy(tmp_path_factory.mktemp("norm"), routes, workers=1,
                       limits={"per_client": {"requests": {"rate": 1000, "burst": 1000}}}) as p:
        yield p


def _get(proxy, backend, target: bytes) -> tuple[int, str | None]:
    """(status, the target the backend received, or None if none reached it)."""
    before = len(backend.requests)
    with proxy.connect() as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        status = read_raw_response(sock).status
    return status, backend.requests[-1].target if len(backend.requests) > before else None


def test_unreserved_escapes_and_slash_runs_meet_their_route(proxy, backend):
    # A target that meets the same route either way goes on byte for byte.
    cases = {b"/%7euser/a": "/home/a", b"/~user//a%2Db": "/home//a%2Db", b"/re//x%41": "/R//x%41",
             b"/a%2Fb%20c%25%41": "/a%2Fb%20c%25%41", b"/x?next=//%6c": "/x?next=//%6c",
             b"/%252e%252e/x": "/%252e%252e/x"}
    assert {t: _get(proxy, backend, t) for t in cases} == {t: (200, want) for t, want in cases.items()}
    assert _get(proxy, backend, b"/%2e%2e/x")[0] == 400 and _get(proxy, backend, b"//..//x")[0] == 400


def test_a_routes_limit_holds_whatever_the_spelling(proxy, backend):
    got = [_get(proxy, backend, t) for t in (b"/%6cogin", b"//login/", b"/%6C%6F%67%69%6E?a=1")]
    assert got == [(200, "/L/login"), (200, "/L/login/"), (429, None)]


def test_an_encoded_slash_meets_the_route_of_the_slash(proxy, backend):
    """"/admin%2Fusers" is /admin/users to a WSGI, Rack or Go backend: it missed the /admin/ route
    (and whatever that route guards) and reached "/", whose backend served it as /admin/users
    (review 2026-12-04-differential #1).  nginx matches its location on the decoded path."""
    assert _get(proxy, backend, b"/admin%2Fusers") == (200, "/A/users")
    assert _get(proxy, backend, b"/admin%2fusers?a=%2F") == (200, "/A/users?a=%2F")
    # Within one route the target still goes on byte for byte.
    assert _get(proxy, backend, b"/admin/a%2Fb") == (200, "/A/a%2Fb")
    assert _get(proxy, backend, b"/files/a%2Fb") == (200, "/files/a%2Fb")
