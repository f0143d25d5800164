"""mpmctl's command line: its verbs and their options (mpm.cli runs them)."""

from __future__ import annotations

import argparse


def _seconds(text: str) -> float:
    """A wait of more than 0 seconds (0 would make the request's socket non-blocking: no answer
    read, and a SIGHUP sent after the request, a second reload)."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 1e6:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return value


def build_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mpmctl", description=description)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, helptext in (("start", "run the master (foreground unless -d)"),
                           ("stop", "graceful stop (--now: immediate)"),
                           ("reload", "graceful reload into a new generation"),
                           ("reopen", "reopen the log files (rotation; the config is not read)"),
                           ("upgrade", "hot upgrade: re-exec the master, keep sockets and tunnels"),
                           ("status", "show the master and its workers"),
                           ("balancer", "balancer members and their state; set NAME MEMBER drain|disable|"
                                        "enable|hot-standby|weight N"),
                           ("configtest", "check a config file")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("-c", "--config", help="config file (default: the embedded conf/default.yaml)")
        if name == "start":
            p.add_argument("-d", "--detach", action="store_true", help="detach and write the pidfile")
        if name == "stop":
            p.add_argument("--now", action="store_true", help="immediate stop (SIGINT)")
        if name == "reload":
            p.add_argument("--wait", type=_seconds, default=30.0, metavar="SECONDS",
                           help="how long to wait for the master's answer (default 30; below a "
                                "service manager's reload timeout, e.g. systemd's TimeoutSec)")
        if name in ("status", "balancer"):
            p.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "balancer":
            p.add_argument("action", nargs="*", help="set NAME MEMBER drain|disable|enable|hot-standby|weight N")
    p = sub.add_parser("import-apache", help="translate an Apache httpd configuration into this proxy's YAML")
    p.add_argument("file", metavar="FILE", help="the httpd configuration (e.g. /etc/apache2/apache2.conf)")
    p.add_argument("-o", "--output", metavar="OUT.yaml", help="write here (default: standard output)")
    p.add_argument("--strict", action="store_true", help="exit 1 if anything at all is not translated")
    p.add_argument("-D", dest="define", action="append", metavar="NAME",
                   help="define NAME for <IfDefine>, like httpd -D (repeatable)")
    return parser
