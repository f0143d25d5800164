"""Server-wide settings: MPM, timeouts, limits, logs, pidfile, TLS sessions -> `mpm:`,
`timeouts:`, `limits:`, `log:`, `control:`, `tls:` (each value with the directive it comes from).

Where httpd's default differs from mpm-proxy's and changes behaviour, httpd's is written
out (ProxyTimeout falls back to Timeout, 60 s; LimitRequestBody is 1 GiB since 2.4.54);
the MPM sizes are written only when the Apache file sets them, since an event worker of
mpm-proxy serves far more connections than an httpd thread.
"""

from __future__ import annotations

import os

from .context import Context, number, on_off, seconds, timeout_of
from .reader import Directive
from .scope import Scope

HTTPD_TIMEOUT = 60.0               # Timeout's default
HTTPD_REQUEST_BODY = 1 << 30       # LimitRequestBody's default since 2.4.54
SERVER_LIMIT_MAX = 256             # conf's scoreboard size
MPM_DIRECTIVES = {"startservers": "workers", "serverlimit": "server_limit", "threadsperchild": "threads_per_child",
                  "maxrequestworkers": "max_request_workers", "maxclients": "max_request_workers",
                  "maxconnectionsperchild": "max_connections_per_child",
                  "maxrequestsperchild": "max_connections_per_child", "gracefulshutdowntimeout": "graceful_timeout"}
LIMITS = {"limitrequestline": ("request_line", 64), "limitrequestfieldsize": ("header_field", 1),
          "limitrequestfields": ("header_fields", 1), "limitrequestbody": ("request_body", 0)}
LEVELS = {"emerg": "error", "alert": "error", "crit": "error", "error": "error", "warn": "warning",
          "notice": "info", "info": "info", "debug": "debug"}
COMBINED = '%h %l %u %t \\"%r\\" %>s %b \\"%{Referer}i\\" \\"%{User-Agent}i\\"'


class Settings:
    """Sections of the output (name -> {key: value}) and a comment per key."""

    def __init__(self):
        self.sections: dict[str, dict] = {}
        self.comments: dict[tuple[str, str], str] = {}

    def set(self, section: str, key: str, value, comment: str) -> None:
        self.sections.setdefault(section, {})[key] = value
        self.comments[(section, key)] = comment


def server_settings(ctx: Context, main: Scope, out: Settings, vhosts: list[Scope] = ()) -> None:
    """`vhosts`: the virtual hosts that serve a listener kept (a CustomLog may be only there)."""
    _mpm(ctx, main, out)
    _timeouts(ctx, main, out)
    _limits(ctx, main, out)
    _logs(ctx, main, out, vhosts)
    _control(ctx, main, out)
    _tls_sessions(ctx, main, out)


def _tls_sessions(ctx: Context, main: Scope, out: Settings) -> None:
    """SSLSessionCacheTimeout: how long mod_ssl resumes a session, tickets included (its
    SSL_CTX_set_timeout), as `tls.session_timeout` does; both default to 300 s."""
    d = main.last("SSLSessionCacheTimeout")
    if d is None:
        return
    ctx.handled.add(id(d))
    t = seconds(d.args)
    if t is None or not 1 <= t <= 604800:
        ctx.report.error(d.where, f"SSLSessionCacheTimeout takes 1 to 604800 seconds here, got '{d.args}'")
        return
    out.set("tls", "session_timeout", t, f"{d.where}  {d.text()}")


def _mpm(ctx: Context, main: Scope, out: Settings) -> None:
    mpm = ctx.tree.modules.mpm
    values: dict[str, tuple[float, Directive]] = {}
    for d in main.directives:
        key = MPM_DIRECTIVES.get(d.key)
        if key is None:
            continue
        ctx.handled.add(id(d))
        if key == "threads_per_child" and mpm == "mpm_prefork_module":
            ctx.report.dropped(d.where, d.text(), "the prefork MPM has no threads")
            continue
        value = seconds(d.args) if key == "graceful_timeout" else number(d, ctx.report)
        if value is None:
            continue
        if key == "graceful_timeout" and value == 0:
            ctx.report.dropped(d.where, d.text(), "0 means no limit in httpd; mpm-proxy needs a number of "
                                                  "seconds and keeps its default (30)")
            continue
        if key == "max_connections_per_child" or key == "graceful_timeout" or value > 0:
            values[key] = (value, d)
    _clamp(ctx, values)
    for key, (value, d) in values.items():
        out.set("mpm", key, value, f"{d.where}  {d.text()}")


def _clamp(ctx: Context, values: dict) -> None:
    """httpd lowers inconsistent MPM sizes at start (and logs it); so does the translation."""
    def lower(key: str, limit: int, why: str) -> None:
        if key in values and values[key][0] > limit:
            value, d = values[key]
            ctx.report.warn(d.where, f"{d.name} {value:g} lowered to {limit} ({why}, as httpd does)")
            values[key] = (limit, d)

    lower("server_limit", SERVER_LIMIT_MAX, f"mpm-proxy's scoreboard has {SERVER_LIMIT_MAX} rows")
    limit = values.get("server_limit", (16, None))[0]
    lower("workers", limit, "StartServers cannot exceed ServerLimit")
    threads = values.get("threads_per_child", (1024, None))[0]
    lower("max_request_workers", limit * threads, "MaxRequestWorkers cannot exceed ServerLimit x ThreadsPerChild")
    if "max_request_workers" in values:
        floor = values.get("workers", (2, None))[0]
        value, d = values["max_request_workers"]
        if value < floor:
            ctx.report.warn(d.where, f"{d.name} {value} raised to {floor}: each of the StartServers processes "
                            "needs room for a connection")
            values["max_request_workers"] = (floor, d)


def _timeouts(ctx: Context, main: Scope, out: Settings) -> None:
    proxy, timeout = main.last("ProxyTimeout"), main.last("Timeout")
    for d in (proxy, timeout):
        if d is not None:
            ctx.handled.add(id(d))
    chosen = proxy or timeout
    value = timeout_of(chosen, ctx.report) if chosen is not None else HTTPD_TIMEOUT
    if value is None or value <= 0:
        ctx.report.error(chosen.where, f"{chosen.name} takes a number of seconds, got '{chosen.args}'")
        value = HTTPD_TIMEOUT
    comment = f"{chosen.where}  {chosen.text()}" if chosen is not None else \
        "httpd's default Timeout (60): there is no ProxyTimeout or Timeout in the Apache file"
    out.set("timeouts", "proxy", value, comment)
    _connect(ctx, value, out)
    # Without mod_reqtimeout a request head has Timeout (not ProxyTimeout, the backend's) to arrive.
    server = seconds(timeout.args) if timeout is not None else HTTPD_TIMEOUT
    if server is None or server <= 0:
        if timeout is not chosen:
            ctx.report.error(timeout.where, f"Timeout takes a number of seconds, got '{timeout.args}'")
        server = HTTPD_TIMEOUT
    _client_header(ctx, main, server, out)
    keepalive = main.last("KeepAliveTimeout")
    if keepalive is not None:
        ctx.handled.add(id(keepalive))
        t = seconds(keepalive.args)
        if t is not None and t > 0:
            out.set("timeouts", "keepalive", t, f"{keepalive.where}  {keepalive.text()}")
        else:
            ctx.report.error(keepalive.where, f"KeepAliveTimeout takes seconds (or NNNms), got '{keepalive.args}'")
    for d in main.own("KeepAlive"):
        ctx.handled.add(id(d))
        if on_off(d, ctx.report) is False:
            ctx.report.dropped(d.where, d.text(), "mpm-proxy always keeps client connections open between requests "
                                                  "(for timeouts.keepalive)")


def _connect(ctx: Context, proxy_timeout: float, out: Settings) -> None:
    if not ctx.connect_timeouts:
        out.set("timeouts", "connect", proxy_timeout, "httpd's default connectiontimeout is the proxy timeout")
        return
    value, first = ctx.connect_timeouts[0]
    for other, d in ctx.connect_timeouts[1:]:
        if other != value:
            ctx.report.dropped(d.where, f"connectiontimeout={other:g}", f"mpm-proxy has one connect timeout; the one "
                               f"at {first.where} ({value:g}) is used")
    out.set("timeouts", "connect", value, f"{first.where}  connectiontimeout={value:g}")


def _client_header(ctx: Context, main: Scope, timeout: float, out: Settings) -> None:
    """RequestReadTimeout header=N[-M][,MinRate=R]: each line sets the keys it names."""
    lines = main.own("RequestReadTimeout")
    if not lines and not ctx.tree.modules.has("reqtimeout_module"):
        out.set("timeouts", "client_header", timeout, "no mod_reqtimeout: httpd waits Timeout for a request head")
    for d in lines:
        ctx.take(d)
        for word in d.args.replace(" ", "").split(","):
            key, _, value = word.partition("=")
            if key.lower() in ("body", "handshake"):
                ctx.report.dropped(d.where, f"RequestReadTimeout {word}", f"mpm-proxy has no {key.lower()} timeout "
                                   "of this kind (timeouts.proxy bounds a stalled body)")
            elif key.lower() == "header":
                _header_timeout(ctx, d, value, out)


def _header_timeout(ctx: Context, d: Directive, value: str, out: Settings) -> None:
    first = value.split("-")[0]
    t = seconds(first)
    if t is None:
        ctx.report.error(d.where, f"RequestReadTimeout: header={value} is not a timeout")
    elif t == 0:
        ctx.report.dropped(d.where, f"RequestReadTimeout header={value}", "0 turns the limit off; mpm-proxy always "
                                                                          "has one")
    else:
        out.set("timeouts", "client_header", t, f"{d.where}  {d.text()}")
        if value != first:
            ctx.report.warn(d.where, f"RequestReadTimeout header={value}: mpm-proxy allows {t:g} s for the head, "
                            "without the extension by MinRate")


def _limits(ctx: Context, main: Scope, out: Settings) -> None:
    for key, (name, minimum) in LIMITS.items():
        d = main.last(key)
        if d is None:
            if name == "request_body":
                out.set("limits", name, HTTPD_REQUEST_BODY, "httpd's default LimitRequestBody (1 GiB, since 2.4.54)")
            continue
        ctx.handled.add(id(d))
        value = number(d, ctx.report)
        if value is None:
            continue
        if value == 0 and name == "header_fields":
            ctx.report.dropped(d.where, d.text(), "0 means no limit in httpd; mpm-proxy keeps its own (100)")
            continue
        if value < minimum:
            ctx.report.warn(d.where, f"{d.name} {value} raised to {minimum}, mpm-proxy's smallest")
            value = minimum
        out.set("limits", name, value, f"{d.where}  {d.text()}")


def _logs(ctx: Context, main: Scope, out: Settings, vhosts) -> None:
    error = main.last("ErrorLog")
    if error is not None:
        ctx.handled.add(id(error))
        target = error.words[0] if error.words else ""
        if target.startswith(("|", "syslog")):
            ctx.report.dropped(error.where, error.text(), "mpm-proxy logs to a file or stderr")
        else:
            out.set("log", "error", ctx.path(target), f"{error.where}  {error.text()}")
    level = main.last("LogLevel")
    if level is not None:
        ctx.handled.add(id(level))
        words = [w for w in level.words if ":" not in w]
        mapped = LEVELS.get(words[-1].lower()) if words else None
        if words and words[-1].lower().startswith("trace"):
            mapped = "debug"
        if mapped:
            out.set("log", "level", mapped, f"{level.where}  {level.text()}")
        if len(words) != len(level.words):
            ctx.report.dropped(level.where, level.text(), "per-module levels: mpm-proxy has one level")
    _access_log(ctx, main, out, vhosts)


def _access_log(ctx: Context, main: Scope, out: Settings, vhosts) -> None:
    """The main server's first CustomLog, else the first one of a virtual host; none: off."""
    formats = {}
    for d in main.own("LogFormat"):
        ctx.take(d)
        if len(d.words) == 2:
            formats[d.words[1]] = d.words[0]
    logs = main.own("CustomLog", "TransferLog") or next(
        (v.own("CustomLog", "TransferLog") for v in vhosts if v.own("CustomLog", "TransferLog")), [])
    if not logs:
        out.set("log", "access", "off", "no CustomLog in the Apache file: httpd writes no access log")
        return
    for d in logs:
        ctx.take(d)
    d, words = logs[0], logs[0].words
    if not words or words[0].startswith("|"):
        ctx.report.dropped(d.where, d.text(), "mpm-proxy logs to a file or stdout")
        return
    out.set("log", "access", ctx.path(words[0]), f"{d.where}  {d.text()}")
    fmt = words[1] if len(words) > 1 and d.key == "customlog" else "common"
    spelled = formats.get(fmt, fmt)
    if fmt != "combined" and spelled.replace('"', '\\"') != COMBINED and spelled != COMBINED.replace('\\"', '"'):
        ctx.report.dropped(d.where, f"{d.name} ... {fmt}", "mpm-proxy writes the combined format (or json)")
    out.set("log", "format", "combined", f"{d.where}  {d.text()}")
    for extra in logs[1:]:
        ctx.report.dropped(extra.where, extra.text(), "mpm-proxy writes one access log")


def _control(ctx: Context, main: Scope, out: Settings) -> None:
    d = main.last("PidFile")
    if d is None or not d.words:
        return
    ctx.handled.add(id(d))
    runtime = main.last("DefaultRuntimeDir")
    base = ctx.path(runtime.words[0]) if runtime is not None and runtime.words else ctx.tree.server_root
    directory = os.path.dirname(os.path.normpath(os.path.join(base, d.words[0])))
    out.set("control", "pidfile", os.path.join(directory, "mpm-proxy.pid"),
            f"{d.where}  {d.text()} (in the same directory, not the same file: httpd may still be running "
            "there during the migration, and mpmctl stop signals the pid it finds)")
    out.set("control", "socket", os.path.join(directory, "mpm-proxy.sock"),
            "no Apache equivalent: mpmctl talks to the master here (next to the pidfile)")
