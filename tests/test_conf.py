"""conf/: YAML -> typed immutable Config, or every problem as FILE:LINE: message.

No network: backends are 127.0.0.1 or localhost, and the one "cannot resolve" case
fakes getaddrinfo.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import textwrap

import pytest
import regex

import conf
from conf import DEFAULT_CONFIG_PATH, UPGRADE_ANY, UPGRADE_NONE, ConfigError, load_config


def write(tmp_path, text: str, name: str = "mpm.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return str(path)


def errors_of(path: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.errors


# -- the embedded default -----------------------------------------------------------------


def test_default_loads_and_resolves_relative_paths_against_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(None)
    assert os.path.isfile(DEFAULT_CONFIG_PATH)
    assert config.file == "<default>"
    assert [str(listener) for listener in config.listeners] == ["127.0.0.1:8080"]
    assert config.mpm == conf.MPM()            # the file spells out the model's defaults
    assert config.timeouts == conf.Timeouts()
    assert config.limits == conf.Limits()
    assert config.control.pidfile == str(tmp_path / "run" / "mpm.pid")
    assert config.control.socket == str(tmp_path / "run" / "mpm.sock")
    assert config.log == conf.Log()
    (route,) = config.routes
    assert route.path == b"/" and route.upgrade == frozenset({"websocket"})
    assert route.target.backend.sockaddr == ("127.0.0.1", 9001)


def test_default_yaml_comments_every_key_with_its_directive():
    lines = open(DEFAULT_CONFIG_PATH).read().splitlines()
    keyed = [line for line in lines if re.match(r"^\s*-?\s*\w+:\s*\S", line) and not line.lstrip().startswith("#")]
    assert keyed and all("#" in line for line in keyed if not line.strip().startswith("to:"))


# -- what a good file turns into --------------------------------------------------------------


def test_full_file_builds_typed_objects(tmp_path):
    (tmp_path / "logs").mkdir()
    path = write(tmp_path, """
        listen:
          - "127.0.0.1:8000"
          - "[::1]:8000"
          - "*:8001"
          - "localhost:8002"
        mpm: {workers: 3, server_limit: 4, threads_per_child: 10, max_request_workers: 40, graceful_timeout: 0.5}
        timeouts: {connect: 1.5, proxy: 60, lingering: 0}
        limits: {request_body: 1048576}
        control: {pidfile: mpm.pid, socket: /tmp/x.sock}
        log: {level: debug, access: off, error: logs/error.log, format: json}
        routes:
          - {path: /ws/, to: "ws://127.0.0.1:9001/ws/"}
          - {match: "^/(myApp/ws)$", to: "ws://localhost:9001/$1"}
          - {path: /, when: {header: {Upgrade: websocket}}, to: "ws://127.0.0.1:9001/", upgrade: ANY}
          - {path: /raw/, to: "http://127.0.0.1:9002", upgrade: none, timeout: 7}
          - {path: /, to: "balancer://cluster/", upgrade: [WebSocket, h2c], reverse: true, preserve_host: true}
        balancers:
          cluster:
            method: bybusyness
            sticky: ROUTEID
            members:
              - {url: "http://127.0.0.1:9001", route: a}
              - {url: "https://127.0.0.1:9443", route: b, weight: 3, status: drain, max_connections: 10,
                 tls: {verify: false, server_name: backend.local}}
        """)
    config = load_config(path)
    assert config.file == path
    a, b, c, d = config.listeners
    assert (a.host, a.port, a.family, a.line) == ("127.0.0.1", 8000, socket.AF_INET, 2)
    assert (b.host, b.family, str(b)) == ("::1", socket.AF_INET6, "[::1]:8000")
    assert c.address == ("0.0.0.0", 8001) and d.address == ("127.0.0.1", 8002)
    assert config.mpm == conf.MPM(3, 4, 10, 40, 0.5, 0)
    assert config.timeouts.connect == 1.5 and config.timeouts.keepalive == conf.Timeouts().keepalive
    assert config.timeouts.lingering == 0.0 and conf.Timeouts().lingering == 5.0
    assert config.limits.request_body == 1048576
    assert config.control.pidfile == str(tmp_path / "mpm.pid") and config.control.socket == "/tmp/x.sock"
    assert config.log == conf.Log("debug", "off", str(tmp_path / "logs" / "error.log"), "json")

    ws, match, cond, raw, bal = config.routes
    assert ws.path == b"/ws/" and ws.target.path == "/ws/" and ws.target.backend.scheme == "ws"
    assert ws.line == 12 and ws.target.backend.sockaddr == ("127.0.0.1", 9001)
    assert match.path is None and match.match.pattern == b"^/(myApp/ws)$" and match.target.path == "/$1"
    assert match.target.backend.host == "localhost" and match.target.backend.port == 9001
    assert cond.when == (conf.HeaderCondition(b"upgrade", regex.compile(b"websocket", regex.IGNORECASE)),)
    assert cond.when[0].pattern.search(b"WebSocket") and cond.upgrade == UPGRADE_ANY
    assert raw.upgrade == UPGRADE_NONE and raw.timeout == 7.0 and raw.target.path == "/"
    assert bal.target.balancer == "cluster" and bal.target.backend is None and bal.target.path == "/"
    assert bal.upgrade == frozenset({"websocket", "h2c"}) and bal.reverse and bal.preserve_host

    cluster = config.balancers["cluster"]
    assert (cluster.name, cluster.method, cluster.sticky, cluster.line) == ("cluster", "bybusyness", "ROUTEID", 18)
    m1, m2 = cluster.members
    assert (m1.route, m1.weight, m1.status, m1.backend.tls) == ("a", 1, "enabled", None)
    assert (m2.weight, m2.status, m2.max_connections) == (3, "drain", 10)
    assert m2.backend.tls == conf.BackendTLS(verify=False, ca=None, server_name="backend.local")
    assert m2.backend.sockaddr == ("127.0.0.1", 9443) and m2.backend.origin == "https://127.0.0.1:9443"


def test_dollar_n_is_one_digit_like_apache(tmp_path):
    # "$10" is group 1 then "0" (ap_pregsub); $0 is the whole match.
    config = load_config(write(tmp_path, """
        listen: ["127.0.0.1:8000"]
        routes:
          - {match: "^/(a)$", to: "ws://127.0.0.1:9001/$10/$0"}
        """))
    assert config.routes[0].target.path == "/$10/$0"


def test_config_is_immutable(tmp_path):
    config = load_config(write(tmp_path, 'listen: ["127.0.0.1:8000"]\n'))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.mpm.workers = 5
    assert config.routes == () and config.balancers == {}


def test_backend_hosts_resolved_once_at_load(tmp_path, monkeypatch):
    calls = []
    real = socket.getaddrinfo

    def counting(host, port, *args, **kwargs):
        calls.append((host, port))
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", counting)
    config = load_config(write(tmp_path, """
        listen: ["127.0.0.1:8000"]
        routes:
          - {path: /a/, to: "http://localhost:9001/a/"}
          - {path: /b/, to: "ws://localhost:9001/b/"}
          - {path: /c/, to: "http://127.0.0.1:9002/"}
        """))
    assert sorted(calls) == [("127.0.0.1", 9002), ("localhost", 9001)]
    backend = config.routes[0].target.backend
    assert backend.family in (socket.AF_INET, socket.AF_INET6)
    assert backend.sockaddr[0] in ("127.0.0.1", "::1") and backend.sockaddr[1] == 9001


def test_yaml_12_booleans_off_is_a_string(tmp_path):
    config = load_config(write(tmp_path, 'listen: ["127.0.0.1:8000"]\nlog: {access: off}\n'))
    assert config.log.access == "off"


def test_tls_listener_and_backend_ca(tmp_path):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "api.example.com")
    leaf.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    config = load_config(write(tmp_path, """
        listen:
          - address: "127.0.0.1:8443"
            tls:
              cert: cert.pem
              key: key.pem
              sni: {API.example.com: {cert: cert.pem, key: key.pem}}
              client_ca: ca.pem
        routes:
          - {path: /, to: "wss://127.0.0.1:9443/", tls: {ca: ca.pem, server_name: localhost}}
        """))
    tls = config.listeners[0].tls
    assert tls.cert == str(tmp_path / "cert.pem") and tls.key == str(tmp_path / "key.pem")
    assert tls.sni == {"api.example.com": conf.CertFiles(tls.cert, tls.key)}
    assert tls.client_ca == str(tmp_path / "ca.pem")
    backend = config.routes[0].target.backend
    assert backend.tls == conf.BackendTLS(True, str(tmp_path / "ca.pem"), "localhost")


# -- broken files: FILE:LINE: message -------------------------------------------------------

LISTEN = 'listen: ["127.0.0.1:8000"]\n'

BROKEN = {
    "unknown top-level key, did you mean": (
        'listn: ["127.0.0.1:8000"]\nlisten: ["127.0.0.1:8001"]\n',
        1, "unknown key 'listn' in top level (did you mean 'listen'?)"),
    "unknown key in a section": (
        LISTEN + "mpm:\n  workers: 2\n  thread_per_child: 8\n",
        4, "unknown key 'thread_per_child' in mpm (did you mean 'threads_per_child'?)"),
    "wrong type": (
        LISTEN + "mpm:\n  workers: eight\n",
        3, "mpm.workers must be an integer >= 1, got string 'eight'"),
    "bool is not a number": (
        LISTEN + "timeouts: {proxy: true}\n",
        2, "timeouts.proxy must be a positive number, got boolean true"),
    "lingering may be 0, not below": (
        LISTEN + "timeouts: {lingering: -1}\n",
        2, "timeouts.lingering must be a number >= 0, got integer -1"),
    "yes is not a boolean": (
        LISTEN + 'routes:\n  - {path: /, to: "http://127.0.0.1:9001/", reverse: yes}\n',
        3, "route.reverse must be true or false, got string 'yes'"),
    "listen host name": (
        'listen:\n  - "example.com:80"\n',
        2, "host must be a numeric IP address, 'localhost' or '*'"),
    "listen ipv6 without brackets": (
        'listen:\n  - "::1:8000"\n',
        2, 'put an IPv6 address in brackets, e.g. "[::1]:8000"'),
    "listen port 0": (
        'listen:\n  - "127.0.0.1:0"\n',
        2, "port 0 is not allowed"),
    "listen port range": (
        'listen:\n  - "127.0.0.1:70000"\n',
        2, "port 70000 is out of range"),
    "duplicate listener": (
        'listen:\n  - "127.0.0.1:8000"\n  - "localhost:8000"\n',
        3, "duplicate listener 127.0.0.1:8000 (first at line 2)"),
    "no listener": (
        "mpm: {workers: 1}\n",
        1, "no 'listen' section"),
    "bad scheme": (
        LISTEN + 'routes:\n  - {path: /, to: "ftp://127.0.0.1/"}\n',
        3, "unsupported scheme 'ftp'"),
    "query in target": (
        LISTEN + 'routes:\n  - {path: /, to: "http://127.0.0.1:9001/?a=1"}\n',
        3, "must not have a query or fragment"),
    "bad regex": (
        LISTEN + 'routes:\n  - match: "^/(myApp"\n    to: "ws://127.0.0.1:9001/$1"\n',
        3, "route.match is not a valid regular expression: missing )"),
    "$N beyond the groups": (
        LISTEN + 'routes:\n  - match: "^/(a)/b$"\n    to: "ws://127.0.0.1:9001/$2"\n',
        4, "route.to uses $2 but the match has 1 group"),
    "$N on a path route": (
        LISTEN + 'routes:\n  - {path: /a/, to: "ws://127.0.0.1:9001/$1"}\n',
        3, "only a 'match' route has groups"),
    "$N in the host": (
        LISTEN + 'routes:\n  - {match: "^/(.*)", to: "ws://$1:9001/"}\n',
        3, "only allowed in the path"),
    "unknown balancer, did you mean": (
        LISTEN + 'balancers:\n  cluster:\n    members: [{url: "http://127.0.0.1:9001"}]\n'
                 'routes:\n  - {path: /, to: "balancer://clustr/"}\n',
        6, "unknown balancer 'clustr' (did you mean 'cluster'?)"),
    "balancer without members": (
        LISTEN + "balancers:\n  cluster:\n    members: []\n",
        4, "balancer 'cluster' needs at least one member"),
    "member weight": (
        LISTEN + 'balancers:\n  c:\n    members:\n      - {url: "http://127.0.0.1:9001", weight: 0}\n',
        5, "balancers.c.members.weight must be an integer from 1 to 100, got integer 0"),
    "unreadable TLS file": (
        'listen:\n  - address: "127.0.0.1:8443"\n    tls:\n      cert: missing.pem\n      key: missing.key\n',
        4, "listen.tls.cert: cannot read '{dir}/missing.pem': No such file or directory"),
    "workers > server_limit": (
        LISTEN + "mpm:\n  workers: 8\n  server_limit: 4\n",
        3, "workers (8) exceeds server_limit (4)"),
    "max_request_workers > server_limit x threads": (
        LISTEN + "mpm:\n  server_limit: 2\n  threads_per_child: 10\n  max_request_workers: 100\n",
        5, "max_request_workers (100) exceeds server_limit x threads_per_child (2 x 10 = 20)"),
    "server_limit cap": (
        LISTEN + "mpm: {server_limit: 1000}\n",
        2, "mpm.server_limit must be an integer from 1 to 256"),
    "control socket too long": (
        LISTEN + "control:\n  socket: /" + "s" * 120 + "\n",
        3, "a Unix socket path must be under 108"),
    "log level": (
        LISTEN + "log: {level: verbose}\n",
        2, "log.level must be one of debug, info, warning, error; got 'verbose'"),
    "path and match": (
        LISTEN + 'routes:\n  - {path: /, match: "^/", to: "http://127.0.0.1:9001/"}\n',
        3, "not both"),
    "route without to": (
        LISTEN + "routes:\n  - path: /\n",
        3, "route is missing 'to'"),
    "shadowed route": (
        LISTEN + 'routes:\n  - {path: /, to: "http://127.0.0.1:9001/"}\n'
                 '  - {path: /ws/, to: "ws://127.0.0.1:9001/"}\n',
        4, "is never used: the route at line 3 (path '/') comes first"),
    "tls on a plain target": (
        LISTEN + 'routes:\n  - {path: /, to: "http://127.0.0.1:9001/", tls: {verify: false}}\n',
        3, "route.tls only applies to https:// and wss:// targets"),
    "yaml syntax error": (
        LISTEN + "mpm: {workers: 2\nlog: {}\n",
        3, "YAML syntax error while parsing a flow mapping (started at line 2)"),
    "yaml tab indentation": (
        LISTEN + "mpm:\n\tworkers: 2\n",
        3, "YAML syntax error"),
    "duplicate yaml key": (
        LISTEN + "mpm: {workers: 2}\nmpm: {workers: 3}\n",
        3, "duplicate key 'mpm' (first given at line 2)"),
    "a session outliving TLS 1.3's seven days": (
        LISTEN + "tls:\n  session_timeout: 700000\n",
        3, "tls.session_timeout must be 1 to 604800 seconds (seven days)"),
    "empty file": (
        "# nothing here\n",
        1, "the configuration file is empty"),
    "not a mapping": (
        "- listen\n",
        1, "the configuration must be a mapping of sections"),
}


@pytest.mark.parametrize("text, line, message", BROKEN.values(), ids=BROKEN.keys())
def test_broken_config_reports_file_line_message(tmp_path, text, line, message):
    path = write(tmp_path, text)
    errors = errors_of(path)
    prefix, message = f"{path}:{line}: ", message.format(dir=tmp_path)
    assert any(e.startswith(prefix) and message in e for e in errors), "\n".join(errors)


def test_at_least_twelve_broken_cases():
    assert len(BROKEN) >= 12


def test_unresolvable_backend_host(tmp_path, monkeypatch):
    def fail(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    path = write(tmp_path, LISTEN + "routes:\n  - {path: /, to: \"http://backend.invalid:9001/\"}\n")
    assert errors_of(path) == [f"{path}:3: cannot resolve backend host 'backend.invalid': Name or service not known"]


def test_certificate_and_key_that_do_not_match(tmp_path):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    ca.issue_cert("localhost").cert_chain_pems[0].write_to_path(str(tmp_path / "a.pem"))
    ca.issue_cert("localhost").private_key_pem.write_to_path(str(tmp_path / "b.key"))
    path = write(tmp_path, 'listen:\n  - {address: "127.0.0.1:8443", tls: {cert: a.pem, key: b.key}}\n')
    (error,) = errors_of(path)
    assert error.startswith(f"{path}:2: listen.tls: certificate and key do not match")


def test_encrypted_key_is_refused_without_prompting(tmp_path):
    trustme = pytest.importorskip("trustme")
    from cryptography.hazmat.primitives import serialization

    leaf = trustme.CA().issue_cert("localhost")
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    (tmp_path / "k.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "c.pem"))
    path = write(tmp_path, 'listen:\n  - {address: "127.0.0.1:8443", tls: {cert: c.pem, key: k.pem}}\n')
    (error,) = errors_of(path)
    assert "is encrypted" in error


def test_all_errors_reported_at_once_sorted_by_line(tmp_path):
    path = write(tmp_path, """
        routes:
          - {path: /, to: "balancer://nope/"}
        mpm:
          workers: 0
        listen:
          - "example.com:80"
          - "127.0.0.1:8000"
        log: {format: xml}
        """)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = [int(e.split(":")[1]) for e in info.value.errors]
    assert lines == [2, 4, 6, 8], info.value.errors
    assert str(info.value) == "\n".join(info.value.errors)
    assert "unknown balancer 'nope'" in info.value.errors[0]
    assert "log.format must be one of combined, json; got 'xml'" in info.value.errors[3]


def test_invalid_balancer_is_not_also_reported_as_unknown(tmp_path):
    path = write(tmp_path, LISTEN + """
balancers:
  cluster: {method: random, members: [{url: "http://127.0.0.1:9001"}]}
routes:
  - {path: /, to: "balancer://cluster/"}
""")
    errors = errors_of(path)
    assert len(errors) == 1 and "balancers.cluster.method must be one of" in errors[0]


def test_missing_file_and_relative_path_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    errors = errors_of("nope.yaml")
    assert errors == [f"{tmp_path}/nope.yaml:1: cannot read the configuration file: No such file or directory"]


# -- HTTP/2 (issue #17) ------------------------------------------------------------------------


def test_http2_per_listener_defaults_and_mistakes(tmp_path):
    trustme = pytest.importorskip("trustme")
    leaf = trustme.CA().issue_cert("localhost")
    leaf.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    config = load_config(write(tmp_path, """
        listen:
          - "127.0.0.1:8000"
          - {address: "127.0.0.1:8001", http2: h2c}
          - {address: "127.0.0.1:8443", tls: {cert: cert.pem, key: key.pem}}
          - {address: "127.0.0.1:8444", tls: {cert: cert.pem, key: key.pem}, http2: false}
        limits: {http2_streams: 64}
        routes: [{path: /, to: "http://127.0.0.1:9001/"}]
        """))
    plain, h2c, tls, h1_only = config.listeners
    assert (plain.http2, h2c.http2, tls.http2, h1_only.http2) == ("", "h2c", "h2", "")
    assert tls.tls.alpn == ("h2", "http/1.1") and h1_only.tls.alpn == ("http/1.1",)
    assert config.limits.http2_streams == 64
    assert errors_of(write(tmp_path, """
        listen:
          - {address: "127.0.0.1:8000", http2: true}
          - {address: "127.0.0.1:8443", tls: {cert: cert.pem, key: key.pem}, http2: h2c}
          - {address: "127.0.0.1:8001", http2: h2}
          - {address: "127.0.0.1:8002", htp2: h2c}
        limits: {http2_streams: 0}
        routes: [{path: /, to: "http://127.0.0.1:9001/"}]
        """, "bad.yaml")) == [
        f"{tmp_path}/bad.yaml:2: listen.http2: true needs tls (browsers negotiate HTTP/2 by ALPN); for cleartext "
        "HTTP/2 with prior knowledge write http2: h2c",
        f"{tmp_path}/bad.yaml:3: listen.http2: h2c is cleartext HTTP/2 for plain listeners; a TLS listener "
        "negotiates h2 by ALPN (http2: true, the default)",
        f"{tmp_path}/bad.yaml:4: listen.http2 must be true, false or h2c; got 'h2' (did you mean 'h2c'?)",
        f"{tmp_path}/bad.yaml:5: unknown key 'htp2' in listen (did you mean 'http2'?)",
        f"{tmp_path}/bad.yaml:6: limits.http2_streams must be an integer from 1 to 4294967295, got integer 0",
    ]


@pytest.mark.parametrize("target, why", [("missing-dir/access.log", "No such file or directory"),
                                         (".", "Is a directory")])
def test_a_log_file_that_cannot_be_opened_is_an_error_at_its_line(tmp_path, target, why):
    """As `nginx -t`: a log the workers could not open is refused when the file is read, so a
    reload never retires the serving generation for workers that would crash at every start."""
    path = write(tmp_path, f"""
        listen: ["127.0.0.1:8000"]
        log:
          level: info
          access: {target}
        routes:
          - {{path: /, to: "http://127.0.0.1:9001/"}}
        """)
    assert errors_of(path) == [f"{path}:4: log.access: cannot open {os.path.normpath(tmp_path / target)} "
                               f"for appending: {why}"]
