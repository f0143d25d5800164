"""Hostile or odd configuration files (review 2026-12-03-control): each costs a FILE:LINE
error, never a traceback, and a reload that meets one leaves the running generation serving.

The loader is exercised in-process (it opens no socket); the master's side with a real proxy.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from proxyproc import raw_exchange
from support import ROOT, wait_for

from conf import ConfigError, load_config

GOOD = 'listen: ["127.0.0.1:8000"]\n'
ROUTE = 'routes: [{path: /, to: "http://127.0.0.1:9/"}]\n'


def _errors(tmp_path, text: str) -> list[str]:
    path = tmp_path / "mpm.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    return info.value.errors


# libyaml refuses a "\\ud800" escape as it parses (PyYAML's own reader, where libyaml is missing,
# lets it through to the checks of the value).
SURROGATE_ESCAPE = "found invalid Unicode character escape code"
# Each: (the file, the line its error must name, a phrase of the message, or phrases: any of them).
ODD = {
    "a bad value for an explicit int tag": (GOOD + "mpm: {workers: !!int \"x\"}\n", 2, "not a valid !!int"),
    "a bad value for an explicit bool tag": (GOOD + "mpm:\n  workers: !!bool x\n", 3, "not a valid !!bool"),
    "a bad timestamp": (GOOD + "mpm: {workers: !!timestamp x}\n", 2, "not a valid !!timestamp"),
    "an integer of 5,000 digits": (GOOD + "mpm: {workers: " + "9" * 5000 + "}\n", 2, "not a valid !!int"),
    "a tagged key": (GOOD + "mpm: {!!int x: 1}\n", 2, "not a valid !!int"),
    # (libyaml stops it first, at its own 1,000 levels: "exceeded maximum nesting depth")
    "flow nesting 3,000 deep": (GOOD + "routes: " + "[" * 3000 + "]" * 3000 + "\n", 2, "nest"),
    "block nesting 200 deep": (GOOD + "routes:\n" + "".join(" " * i + "-\n" for i in range(1, 200)), 66,
                               "nested more than"),
    "a regex repeat count too large": (GOOD + "routes: [{match: \"a{99999999999}\", to: \"http://127.0.0.1:9/\"}]\n",
                                       2, "route.match is not a valid regular expression"),
    "a regex with a lone surrogate": (GOOD + "routes: [{match: \"\\ud800\", to: \"http://127.0.0.1:9/\"}]\n", 2,
                                      ("route.match is not a valid regular expression", SURROGATE_ESCAPE)),
    "a health check regex too large": (GOOD + 'routes: [{path: /, to: "balancer://c/"}]\nbalancers:\n  c:\n'
                                       '    members: [{url: "http://127.0.0.1:9"}]\n'
                                       '    health: {expect: "a{99999999999}"}\n', 6, "health.expect"),
    "an IPv6 scope with a lone surrogate": ('listen: ["[fe80::1%\\ud800]:8000"]\n', 1, ("must be ASCII", SURROGATE_ESCAPE)),
    # Review 2026-12-04-conf: #9, #3, #4, #7, #11.
    "a form feed on line 3": (GOOD + "mpm: {workers: 1}\n\f\n", 3, "control character (U+000C)"),
    "an ESC on line 2": (GOOD + "mpm: {workers: 1}  # \x1b[31m\n", 2, "control character (U+001B)"),
    "more HTTP/2 streams than SETTINGS can say": (GOOD + "limits: {http2_streams: 8589934592}\n", 2,
                                                  "from 1 to 4294967295"),
    "a graceful timeout of 0": (GOOD + "mpm:\n  graceful_timeout: 0\n", 3, "0 would cut every request"),
    "a watchdog under two heartbeats": (GOOD + "mpm: {watchdog: 0.2}\n", 2, "at least 1 s"),
    "a port of fullwidth digits": ('listen: ["127.0.0.1:\uff18\uff10\uff18\uff10"]\n', 1, "is not a number"),
    "a port of superscript digits": ('listen: ["127.0.0.1:8\u00b2"]\n', 1, "is not a number"),
    # Review 2026-12-04-conf #8, #10: routes the workers would never reach, a URL urlsplit would edit.
    "/api before /api/v2": (GOOD + 'routes:\n  - {path: /api, to: "http://127.0.0.1:9/"}\n'
                            '  - {path: /api/v2, to: "http://127.0.0.1:9/"}\n', 4, "(path '/api') comes first"),
    "the same match twice": (GOOD + 'routes:\n  - {match: "^/a", to: "http://127.0.0.1:9/"}\n'
                             '  - {match: "^/a", to: "http://127.0.0.1:9/b"}\n', 4, "(the same match) comes first"),
    "a path with a dot segment": (GOOD + 'routes: [{path: /a/../b/, to: "http://127.0.0.1:9/"}]\n', 2,
                                  "can never match"),
    # Review 2026-12-04-session-diff Y1: libyaml does not name the character; the message does.
    "a tab after a dash": (GOOD + "routes:\n-\t{path: /, to: \"http://127.0.0.1:9/\"}\n", 3,
                           "found character '\\t' that cannot start any token"),
    # Patterns are the regex module's (the workers search with it): a "{" that starts no count
    # is refused there, with FILE:LINE, rather than read as text by one engine and not the other.
    "a brace that starts no count": (GOOD + 'routes: [{match: "^/api/{id}", to: "http://127.0.0.1:9/"}]\n', 2,
                                     "route.match is not a valid regular expression"),
    "a backend URL with a line break": (GOOD + 'routes: [{path: /, to: "http://127.0.0.1:9/\\nadmin/"}]\n', 2,
                                        "a control character"),
}


@pytest.mark.parametrize("case", ODD)
def test_odd_yaml_is_a_line_numbered_error(tmp_path, case):
    text, line, phrases = ODD[case]
    errors = _errors(tmp_path, text)
    wanted = f"{tmp_path / 'mpm.yaml'}:{line}:"
    phrases = phrases if isinstance(phrases, tuple) else (phrases,)
    assert any(e.startswith(wanted) and any(p in e for p in phrases) for e in errors), \
        f"wanted {wanted} ... {phrases}: {errors}"


@pytest.mark.timeout(30)
def test_a_reload_signal_with_an_unreadable_value_keeps_the_server(proxy_factory, http_backend):
    """SIGHUP ran reload() outside the master's containment: a file whose checker raised took
    the master, and so every worker, down; mpmctl status and configtest printed a traceback."""
    proxy = proxy_factory([{"path": "/", "to": http_backend().url + "/"}], workers=1)
    before = proxy.worker_pids()
    with open(proxy.config_path, "a") as f:
        f.write("limits: {request_line: !!int \"x\"}\n")
    os.kill(proxy.proc.pid, signal.SIGHUP)
    said = wait_for(lambda: "reload refused" in proxy.error_text() or proxy.proc.poll() is not None, 5)
    time.sleep(0.2)
    assert said and proxy.proc.poll() is None, f"master exited: {proxy.error_text()[-600:]}"
    assert proxy.worker_pids() == before
    assert raw_exchange(proxy, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 200")
    checked = proxy.mpmctl("configtest")
    assert checked.returncode == 1 and "Traceback" not in checked.stderr
    assert f"{proxy.config_path}:" in checked.stderr and "not a valid !!int" in checked.stderr
    assert proxy.mpmctl("status").returncode == 0, "status works on a broken file"


PATHS = {
    "log.access": 'log: {access: "%s"}\n',
    "log.error": 'log: {error: "%s"}\n',
    "control.pidfile": 'control: {pidfile: "%s"}\n',
    "control.socket": 'control: {socket: "%s"}\n',
    "listen.tls.cert": None,
    "tls.session_ticket_key": 'tls: {session_ticket_key: "%s"}\n',
}


@pytest.mark.parametrize("key", PATHS)
@pytest.mark.parametrize("bad, phrase", [("run/a\\0b", "must not contain a NUL byte"),
                                         ("run/\\ud800", "cannot be encoded for the file system")])
def test_a_path_no_process_can_open_is_refused(tmp_path, key, bad, phrase):
    """Such a path passed the loader (log.access) or raised in it (a certificate): after a reload
    every new worker died at its start, with the old generation already retired."""
    if key == "listen.tls.cert":
        text = f'listen: [{{address: "127.0.0.1:8443", tls: {{cert: "{bad}", key: k.pem}}}}]\n'
    else:
        text = GOOD + PATHS[key] % bad
    errors = _errors(tmp_path, text)
    assert any((f"{key} {phrase}" in e or "ud800" in bad and SURROGATE_ESCAPE in e)
               and e.startswith(f"{tmp_path / 'mpm.yaml'}:") for e in errors), errors


@pytest.mark.timeout(30)
def test_a_reload_naming_an_access_log_with_a_nul_byte_is_refused(proxy_factory, http_backend):
    proxy = proxy_factory([{"path": "/", "to": http_backend().url + "/"}], workers=1)
    before = proxy.worker_pids()
    proxy.config["log"]["access"] = proxy.access_log + "\0.old"
    proxy.write_config()
    result = proxy.reload()
    assert result.returncode == 1 and "log.access must not contain a NUL byte" in result.stderr, result.stderr
    time.sleep(0.3)
    assert proxy.status()["generation"] == 1 and proxy.worker_pids() == before
    assert raw_exchange(proxy, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 200")


def _alias_bomb(levels: int) -> str:
    """A 'billion laughs': ten aliases of the level below per level, 10**levels leaves."""
    lines = ['x0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_costs_its_size_not_its_expansion(tmp_path):
    """Nine levels in 600 bytes: each alias used to be converted again (x10 per level: six
    levels took 6 s and 280 MB, nine would take hours).  Run in a child with 512 MB of address
    space and 10 s, so the parent's behaviour fails this test instead of the machine."""
    path = tmp_path / "mpm.yaml"
    path.write_text(_alias_bomb(9) + GOOD + "routes: *a8\n")
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (512 << 20, 512 << 20))\n"
            "from conf import ConfigError, load_config\n"
            f"try:\n    load_config({str(path)!r})\nexcept ConfigError as exc:\n    print(exc)\n")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=10, cwd=ROOT)
    took = time.monotonic() - started
    assert result.returncode == 0 and f"{path}:9: unknown key 'x8' in top level" in result.stdout, result.stderr[-300:]
    assert "each route must be a mapping" in result.stdout
    assert took < 5, f"{took:.1f} s"


@pytest.mark.timeout(40)
def test_a_reload_of_an_alias_bomb_leaves_the_master_answering(proxy_factory, http_backend):
    proxy = proxy_factory([{"path": "/", "to": http_backend().url + "/"}], workers=1)
    with open(proxy.config_path) as f:
        good = f.read()
    with open(proxy.config_path, "w") as f:
        f.write(_alias_bomb(6) + good)
    os.kill(proxy.proc.pid, signal.SIGHUP)
    started = time.monotonic()
    # (One "reload refused" line per problem, written one after another: wait for the last.)
    wait_for(lambda: "reload refused" in proxy.error_text(), 30, 0.02, "the reload's refusal")
    took = time.monotonic() - started
    wait_for(lambda: "unknown key 'x5' in top level" in proxy.error_text(), 5, 0.02, "x5's line")
    assert took < 1.0, f"the master spent {took:.1f} s on a 600-byte file"


def test_a_chain_of_merge_keys_is_refused_before_it_costs_its_square(tmp_path):
    """Review 2026-12-04-conf #1: each mapping merging the one before copied 1 + 2 + ... + N
    entries (6,000 lines: 490 MiB and 5 s in the master's loop).  The merges may copy 100,000
    entries in all; this chain of 3,000 would copy 4.5 million."""
    chain = ["a0: &a0 {k0: 0}"] + [f"a{i}: &a{i} {{<<: *a{i - 1}, k{i}: 0}}" for i in range(1, 3000)]
    path = tmp_path / "mpm.yaml"
    path.write_text(GOOD + "x:\n" + "".join(f"  {line}\n" for line in chain))
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    took = time.monotonic() - started
    assert any("the merge keys (<<) copy more than 100,000 entries" in e for e in info.value.errors), info.value.errors
    assert took < 2, f"{took:.1f} s"


def test_a_pidfile_that_is_no_pidfile_is_refused_and_never_read_whole(tmp_path):
    """Review 2026-12-04-conf #6: `pidfile: /dev/zero` made every mpmctl verb read without end,
    and a pidfile naming a log overwrote it with the pid."""
    from mpm.pidfile import read_pid
    (tmp_path / "access.log").write_text('127.0.0.1 - - "GET / HTTP/1.1" 200\n')
    for pidfile, phrase in (("/dev/zero", "exists and is not a regular file"),
                            ("access.log", "holds something other than a pid")):
        errors = _errors(tmp_path, GOOD + f"control: {{pidfile: {pidfile}}}\n")
        assert any(e.startswith(f"{tmp_path / 'mpm.yaml'}:2: ") and phrase in e for e in errors), errors
    assert read_pid("/dev/zero") is None and read_pid(str(tmp_path / "access.log")) is None
    (tmp_path / "mpm.pid").write_text("12345\n")
    assert read_pid(str(tmp_path / "mpm.pid")) == 12345
    load_config(str((tmp_path / "ok.yaml").write_text(GOOD + "control: {pidfile: mpm.pid}\n") and tmp_path / "ok.yaml"))


@pytest.mark.parametrize("control, phrase", [
    ('{pidfile: run/mpm.pid, socket: run/mpm.pid}', "control.socket and control.pidfile are the same file"),
    ('{socket: mpm.yaml}', "control.socket is the configuration file itself"),
    ('{pidfile: mpm.yaml}', "control.pidfile is the configuration file itself"),
    ('{socket: notes.txt}', "control.socket '{dir}/notes.txt' exists and is not a socket"),
])
def test_a_control_path_naming_another_file_is_refused(tmp_path, control, phrase):
    """The master unlinked whatever was at control.socket (and wrote the pidfile over anything):
    `socket: mpm.yaml` replaced the configuration by a socket, `socket: run/mpm.pid` the pidfile."""
    (tmp_path / "notes.txt").write_text("keep me\n")
    errors = _errors(tmp_path, GOOD + f"control: {control}\n")
    assert any(e.startswith(f"{tmp_path / 'mpm.yaml'}:2: ") and phrase.format(dir=tmp_path) in e for e in errors), errors
    assert (tmp_path / "notes.txt").read_text() == "keep me\n"


@pytest.mark.timeout(10)
def test_a_config_that_is_a_fifo_or_too_large_is_refused_at_once(tmp_path):
    """The file was read whole, whatever it was: a FIFO without a writer blocked the open (a
    reload then hung the master), /dev/zero read until memory ran out, and 8 MB of comments
    held a reload 4 s."""
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match=r"fifo.yaml:1: the configuration file is not a regular file"):
        load_config(str(fifo))
    big = tmp_path / "big.yaml"
    big.write_text(GOOD + ("# padding " + "y" * 70 + "\n") * 60_000)     # 4.8 MB
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"big.yaml:1: the configuration file is larger than 4 MiB"):
        load_config(str(big))
    assert time.monotonic() - started < 0.5


def test_a_key_overriding_a_merged_one_is_not_a_duplicate(tmp_path):
    """`<<: *base` then a key of the base's: the override is what a merge is for (YAML's merge
    key, yaml.safe_load), but it was reported as "duplicate key"."""
    path = tmp_path / "mpm.yaml"
    path.write_text(GOOD + "routes:\n"
                    "  - &api {path: /api/, to: \"http://127.0.0.1:9001/\", preserve_host: true}\n"
                    "  - {<<: *api, path: /v2/api/}\n"
                    "  - {<<: [{path: /a/}, *api], to: \"http://127.0.0.1:9002/\"}\n")
    routes = load_config(str(path)).routes
    assert [route.path for route in routes] == [b"/api/", b"/v2/api/", b"/a/"]
    assert [route.preserve_host for route in routes] == [True, True, True]
    assert routes[2].target.backend.sockaddr == ("127.0.0.1", 9002)
    errors = _errors(tmp_path, GOOD + "routes:\n  - {<<: 5, path: /, to: \"http://127.0.0.1:9/\"}\n")
    assert errors == [f"{path}:3: a merge key (<<) takes a mapping or a list of mappings"]


@pytest.mark.timeout(10)
@pytest.mark.parametrize("where", ["listen.tls.cert", "tls.session_ticket_key", "route.tls.ca"])
def test_a_tls_file_that_is_a_fifo_is_refused_without_waiting(tmp_path, where):
    """The checks opened the file: a FIFO (no writer) blocked configtest for good, and a reload
    the master's loop."""
    os.mkfifo(tmp_path / "pipe.pem")
    text = {"listen.tls.cert": 'listen: [{address: "127.0.0.1:8443", tls: {cert: pipe.pem, key: pipe.pem}}]\n',
            "tls.session_ticket_key": GOOD + "tls: {session_ticket_key: pipe.pem}\n",
            "route.tls.ca": GOOD + 'routes: [{path: /, to: "https://127.0.0.1:9/", tls: {ca: pipe.pem}}]\n'}[where]
    errors = _errors(tmp_path, text)
    assert any(f"'{tmp_path / 'pipe.pem'}' is not a regular file" in e and where.split(".")[-1] in e
               for e in errors), errors


@pytest.mark.parametrize("text", [
    GOOD + 'routes: [{path: "a\\n/etc/mpm.yaml:99: listen is fine", to: "http://127.0.0.1:9/"}]\n',
    GOOD + 'log: {level: "x\\ny"}\n',
    GOOD + '"foo\\nbar": 1\n',
    'listen: ["127.0.0.1:1\\n2"]\n',
])
def test_a_value_with_a_line_break_is_quoted_back_on_one_line(tmp_path, text):
    """One problem, one line in configtest's output and the error log: a line break in a value
    quoted back read as a second problem (review 2026-12-04-conf #10)."""
    errors = _errors(tmp_path, text)
    assert errors and all("\n" not in e and e.startswith(f"{tmp_path / 'mpm.yaml'}:") for e in errors), errors
    assert any("\\n" in e for e in errors), errors
