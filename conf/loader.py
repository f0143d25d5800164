"""load_config(): a YAML file -> a validated, immutable `Config`, or ConfigError.

The whole file is checked before anything starts (and before a reload replaces a
running generation): every problem is collected with its line, and only a file
with none becomes a Config.  Sections are read in file-independent order; the
errors are sorted by line at the end.
"""

from __future__ import annotations

import os
import re
import stat

from .addresses import BALANCER_NAME, Resolver
from .admin import build_admin
from .balancers import build_balancers
from .clients import per_client, trusted_proxies
from .errors import ConfigError
from .fields import Errors, Section, describe
from .listeners import build_listeners
from .model import (
    HEARTBEAT_INTERVAL,
    LOG_FORMATS,
    LOG_LEVELS,
    MPM,
    WATCHDOG_MIN,
    Config,
    Control,
    Limits,
    Log,
    Timeouts,
)
from .routes import build_routes
from .tlsfiles import tls_settings
from .yamlnodes import Map, YamlProblem, parse

PID_TEXT_MAX = 20           # digits and a newline: what a pidfile holds (mpm.pidfile reads no further)
DEFAULT_CONFIG_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default.yaml")
DEFAULT_CONFIG_NAME = "<default>"   # Config.file of the embedded default

TOP_KEYS = ("listen", "mpm", "timeouts", "limits", "control", "log", "routes", "balancers", "admin", "tls")
MPM_KEYS = ("workers", "server_limit", "threads_per_child", "max_request_workers", "graceful_timeout",
            "max_connections_per_child", "watchdog")
TIMEOUT_KEYS = ("connect", "proxy", "client_header", "keepalive", "handshake", "lingering")
LIMIT_KEYS = ("request_line", "header_field", "header_fields", "request_body", "http2_streams")
CLIENT_LIMIT_KEYS = ("per_client", "trusted_proxies")       # conf/clients.py
CONTROL_KEYS = ("pidfile", "socket")
LOG_KEYS = ("level", "access", "error", "format")
TLS_KEYS = ("ticket_key_rotation", "session_ticket_key", "ciphersuites", "session_timeout")

SERVER_LIMIT_MAX = 256          # the scoreboard is a fixed table sized before fork
MAX_CONFIG_BYTES = 4 << 20      # a thousand routes take ~100 KB
SUN_PATH_MAX = 108              # sizeof(sockaddr_un.sun_path) on Linux, terminating NUL included


def load_config(path: str | None) -> Config:
    """Read and validate `path` (None: the embedded default.yaml); raise ConfigError listing every problem.

    Relative paths inside the file resolve against the file's directory; for the
    embedded default, against the current directory (its `run/` is the operator's).
    """
    if path is None:
        file, name, base_dir = DEFAULT_CONFIG_PATH, DEFAULT_CONFIG_NAME, os.getcwd()
    else:
        file = os.path.abspath(path)
        name, base_dir = file, os.path.dirname(file)
    data = _read(file)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError([f"{file}:{line}: the configuration file is not UTF-8 text"]) from None
    try:
        tree = parse(text)
        errors = Errors(base_dir)
        config = _build(tree, errors, name) if tree is not None else None
    except YamlProblem as problem:
        raise ConfigError(_format(file, problem.problems)) from None
    except Exception as exc:    # noqa: BLE001 - a checker's bug must not take a reload's master down
        # Every input should meet a check with a line; this is the net under the ones that do
        # not yet, so `configtest` still answers FILE:LINE and a reload is still refused.
        raise ConfigError([_one_line(f"{file}:1: the configuration could not be checked: {type(exc).__name__}: "
                                     f"{str(exc)[:200]} (please report this)")]) from exc
    if tree is None:
        errors.add(1, "the configuration file is empty (at least a 'listen' section is needed)")
    if errors.items:
        raise ConfigError(_format(file, errors.items))
    return config


def _read(file: str) -> bytes:
    """The file's bytes; a ConfigError for what no configuration is: a FIFO or a device (open
    would wait for a writer, /dev/zero never ends) or more than MAX_CONFIG_BYTES (the reload
    that reads it holds the master: about 0.6 MB/s parsed here, libyaml's parser under PyYAML's
    composer; 6,000 routes in 275 KB load in 0.4 s)."""
    try:
        if not stat.S_ISREG(os.stat(file).st_mode):
            raise ConfigError([f"{file}:1: the configuration file is not a regular file"])
        with open(file, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"{file}:1: cannot read the configuration file: {exc.strerror or exc}"]) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{file}:1: the configuration file is larger than {MAX_CONFIG_BYTES >> 20} MiB"])
    return data


def _format(file: str, problems: list[tuple[int, str]]) -> list[str]:
    return [_one_line(f"{file}:{line}: {message}") for line, message in sorted(problems, key=lambda p: p[0])]


# Line breaks and other control characters, as Python writes them in a string ("\\n").
_CONTROL = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")


def _one_line(message: str) -> str:
    """One problem, one line: a value quoted back with a line break in it ("a\\n/etc/mpm.yaml:99:
    ...") read as two problems in configtest's output and the master's error log (review
    2026-12-04-conf #10)."""
    return _CONTROL.sub(lambda found: found.group().encode("unicode_escape").decode("ascii"), message)


def _build(tree, errors: Errors, name: str) -> Config | None:
    if not isinstance(tree, Map):
        errors.add(tree.line, f"the configuration must be a mapping of sections ({', '.join(TOP_KEYS)}), "
                              f"got {describe(tree)}")
        return None
    top = Section(errors, tree, "", TOP_KEYS)
    resolver = Resolver()
    listeners = build_listeners(top)
    mpm = _mpm(_section(top, "mpm", MPM_KEYS))
    timeouts = _timeouts(_section(top, "timeouts", TIMEOUT_KEYS))
    limits = _limits(_section(top, "limits", LIMIT_KEYS + CLIENT_LIMIT_KEYS))
    control = _control(_section(top, "control", CONTROL_KEYS), name)
    log = _log(_section(top, "log", LOG_KEYS))
    tls = tls_settings(_section(top, "tls", TLS_KEYS))
    balancers = build_balancers(top, resolver)
    declared = set(_declared_balancers(top))
    routes = build_routes(top, balancers, declared, resolver)
    admin = build_admin(top, listeners)
    if errors.items:
        return None
    return Config(name, listeners, mpm, timeouts, limits, control, log, routes, balancers, admin, tls)


def _section(top: Section, key: str, allowed: tuple[str, ...]) -> Section:
    """A top-level section; absent, null or (after an error) the wrong type reads as empty."""
    sec = top.mapping(key, key, allowed)
    return sec if sec is not None else Section(top.errors, Map(line=top.line(key)), key, allowed)


def _declared_balancers(top: Section):
    node = top.raw("balancers")
    return [k for k in node.entries if BALANCER_NAME.match(k)] if isinstance(node, Map) else []


# -- mpm, timeouts, limits, control, log ---------------------------------------------------


def _mpm(sec: Section) -> MPM:
    d = MPM()
    workers = sec.integer("workers", d.workers, 1)
    server_limit = sec.integer("server_limit", d.server_limit, 1, SERVER_LIMIT_MAX)
    threads = sec.integer("threads_per_child", d.threads_per_child, 1)
    # Like Apache, an unset MaxRequestWorkers follows ServerLimit x ThreadsPerChild down
    # rather than making a small setup spell out a third number.
    implicit_max = min(d.max_request_workers, (server_limit or 1) * (threads or 1))
    max_workers = sec.integer("max_request_workers", implicit_max, 1)
    graceful = sec.number("graceful_timeout", d.graceful_timeout, positive=False)
    if graceful == 0:
        # Apache's GracefulShutdownTimeout 0 is "no limit"; taken as 0 s here, every reload
        # would cut what is in flight (review 2026-12-04-conf #4).  mpm/apache refuses it too.
        sec.error("graceful_timeout", "mpm.graceful_timeout: 0 would cut every request and tunnel in flight "
                                      "at each reload and stop (httpd's 0 means no limit, which has no "
                                      "equivalent here): give seconds")
        graceful = None
    per_child = sec.integer("max_connections_per_child", d.max_connections_per_child, 0)
    watchdog = sec.number("watchdog", d.watchdog, positive=False)
    if watchdog is not None and 0 < watchdog < WATCHDOG_MIN:
        sec.error("watchdog", f"mpm.watchdog must be 0 (off) or at least {WATCHDOG_MIN:g} s: workers beat "
                              f"every {HEARTBEAT_INTERVAL:g} s, so a shorter one replaces healthy workers, got {watchdog:g}")
        watchdog = None
    if workers and server_limit and workers > server_limit:
        sec.errors.add(sec.first_line("workers", "server_limit"),
                       f"workers ({workers}) exceeds server_limit ({server_limit})")
    explicit = "max_request_workers" in sec   # the implicit value fits by construction
    if explicit and max_workers and server_limit and threads and max_workers > server_limit * threads:
        sec.errors.add(sec.first_line("max_request_workers", "threads_per_child", "server_limit"),
                       f"max_request_workers ({max_workers}) exceeds server_limit x threads_per_child "
                       f"({server_limit} x {threads} = {server_limit * threads})")
    if explicit and max_workers and workers and max_workers < workers:
        sec.errors.add(sec.first_line("max_request_workers", "workers"),
                       f"max_request_workers ({max_workers}) is less than workers ({workers}): "
                       "each worker needs room for at least one connection")
    return MPM(workers or d.workers, server_limit or d.server_limit, threads or d.threads_per_child,
               max_workers or d.max_request_workers, d.graceful_timeout if graceful is None else graceful,
               d.max_connections_per_child if per_child is None else per_child,
               d.watchdog if watchdog is None else watchdog)


def _timeouts(sec: Section) -> Timeouts:
    d = Timeouts()
    values = {key: sec.number(key, getattr(d, key), positive=key != "lingering") for key in TIMEOUT_KEYS}
    return Timeouts(**{key: getattr(d, key) if v is None else v for key, v in values.items()})


def _limits(sec: Section) -> Limits:
    d = Limits()
    minimum = {"request_line": 64, "header_field": 1, "header_fields": 1, "request_body": 0, "http2_streams": 1}
    # SETTINGS_MAX_CONCURRENT_STREAMS is a 32-bit value (RFC 9113 §6.5.1): a larger one failed
    # every HTTP/2 connection (review 2026-12-04-conf #3).
    maximum = {"http2_streams": 2**32 - 1}
    values = {key: sec.integer(key, getattr(d, key), minimum[key], maximum.get(key)) for key in LIMIT_KEYS}
    values["per_client"] = per_client(sec, "per_client", route=False)
    values["trusted_proxies"] = trusted_proxies(sec, "trusted_proxies")
    return Limits(**{key: getattr(d, key) if v is None else v for key, v in values.items()})


def _control(sec: Section, config_file: str) -> Control:
    pidfile = sec.path("pidfile", "run/mpm.pid")
    socket_path = sec.path("socket", "run/mpm.sock")
    if socket_path is not None and len(os.fsencode(socket_path)) >= SUN_PATH_MAX:
        sec.error("socket", f"control.socket path is {len(os.fsencode(socket_path))} bytes once made absolute "
                            f"('{socket_path}'); a Unix socket path must be under {SUN_PATH_MAX}")
    elif socket_path is not None:
        _check_socket_path(sec, socket_path, pidfile, config_file)
    if pidfile is not None and pidfile == config_file:
        sec.error("pidfile", f"control.pidfile is the configuration file itself ('{pidfile}'): it would be overwritten")
    elif pidfile is not None and (problem := _pidfile_problem(pidfile)) is not None:
        sec.error("pidfile", f"control.pidfile '{pidfile}' {problem}: it would be overwritten "
                             "(remove it, or choose another path)")
    return Control(pidfile or "", socket_path or "")


def _pidfile_problem(path: str) -> str | None:
    """Why the file at `path` cannot be a pidfile the master may overwrite, or None (absent,
    empty, or a pid): a typo naming a log or any other file would replace its contents, and
    /dev/zero was read without end by every mpmctl verb (review 2026-12-04-conf #6)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be looked at ({exc.strerror})"
    if not stat.S_ISREG(mode):
        return "exists and is not a regular file"
    try:
        with open(path, "rb") as f:
            text = f.read(PID_TEXT_MAX + 1).strip()
    except OSError:
        return None          # unreadable here (another user's): the master says so when it writes
    if text and (len(text) > PID_TEXT_MAX or not text.isdigit()):
        return "holds something other than a pid"
    return None


def _check_socket_path(sec: Section, path: str, pidfile: str | None, config_file: str) -> None:
    """The master replaces whatever is at control.socket by its socket (a stale one is left by
    a crash): a typo naming the pidfile, the configuration or any other file would delete it."""
    if path == pidfile:
        sec.error("socket", f"control.socket and control.pidfile are the same file ('{path}')")
    elif path == config_file:
        sec.error("socket", f"control.socket is the configuration file itself ('{path}'): it would be replaced")
    elif os.path.lexists(path) and not stat.S_ISSOCK(os.lstat(path).st_mode):
        sec.error("socket", f"control.socket '{path}' exists and is not a socket: it would be replaced "
                            "(remove it, or choose another path)")


def _log(sec: Section) -> Log:
    d = Log()
    level = sec.choice("level", d.level, LOG_LEVELS)
    log_format = sec.choice("format", d.format, LOG_FORMATS)
    access = sec.string("access", d.access)
    if access not in (None, "-", "off"):
        access = _log_file(sec, "access")
    error = sec.string("error", d.error)
    if error == "off":
        sec.error("error", "log.error cannot be off; use \"-\" for stderr or a file path")
    elif error not in (None, "-"):
        error = _log_file(sec, "error")
    return Log(level or d.level, access or d.access, error or d.error, log_format or d.format,
               sec.line("error") if "error" in sec else 0)


def _log_file(sec: Section, key: str) -> str | None:
    """A log file path the workers will be able to open, as nginx -t checks its own: workers
    that could not would crash at every start, after a reload had already retired the
    generation that served.  Checked without creating it (configtest and import-apache
    must leave no file behind)."""
    path = sec.path(key, None)
    why = _unwritable(path) if path is not None else None
    if why is not None:
        sec.error(key, f"log.{key}: cannot open {path} for appending: {why}")
    return path


def _unwritable(path: str) -> str | None:
    if os.path.isdir(path):
        return "Is a directory"
    if os.path.exists(path):
        return None if os.access(path, os.W_OK) else "Permission denied"
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        return "No such file or directory"
    return None if os.access(directory, os.W_OK | os.X_OK) else "Permission denied"
