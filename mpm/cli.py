"""mpmctl: start | stop [--now] | reload | upgrade | status [--json] | balancer | configtest, each with
-c FILE;
import-apache FILE [-o OUT.yaml] [--strict] (an httpd configuration -> this proxy's YAML).

Without -c the embedded conf/default.yaml is used.  stop/reload/status talk to the
master over the control socket (JSON lines) and fall back to the pidfile and signals
when the socket does not answer.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time

from conf import ConfigError, control_only_config, load_config
from mpm import control, masterlog
from mpm.pidfile import AlreadyRunning, pid_alive, process_running, read_pid

EXIT_OK, EXIT_FAIL, EXIT_NOT_RUNNING = 0, 1, 3


def _load(args):
    try:
        return load_config(args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return None


def _load_for_control(args):
    """stop/status must work while the file on disk is being edited and broken: fall back
    to reading only its control paths (or the defaults) so the running master is found."""
    try:
        return load_config(args.config)
    except ConfigError as exc:
        config = control_only_config(args.config)
        if config is None:
            print(str(exc), file=sys.stderr)
        return config


def cmd_configtest(args) -> int:
    config = _load(args)
    if config is None:
        return EXIT_FAIL
    print("Syntax OK")
    return EXIT_OK


def cmd_start(args) -> int:
    config = _load(args)
    if config is None:
        return EXIT_FAIL
    pid = read_pid(config.control.pidfile)
    if pid is not None and pid_alive(pid) and str(pid) != os.environ.get("MPM_UPGRADE_FROM"):
        print(f"mpmctl: already running (pid {pid}, pidfile {config.control.pidfile})", file=sys.stderr)
        return EXIT_FAIL
    if args.detach:
        if _daemonize():
            return _wait_started(config)
    from mpm.listeners import BindError
    from mpm.master import Master  # imported here: configtest and status stay light
    masterlog.setup(config)
    try:
        return Master(args.config, config).run()
    except AlreadyRunning as exc:
        print(f"mpmctl: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except BindError as exc:
        logging.getLogger("mpm.master").error("cannot start: %s:%d: %s", config.file, exc.line, exc.text)
        return EXIT_FAIL
    except OSError as exc:
        logging.getLogger("mpm.master").error("cannot start: %s", exc)
        return EXIT_FAIL


def _daemonize() -> bool:
    """Double fork; True in the original process, False in the detached one."""
    if os.fork() > 0:
        return True
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    return False


def _wait_started(config) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pid = read_pid(config.control.pidfile)
        if pid and pid_alive(pid) and os.path.exists(config.control.socket):
            print(f"mpm started, master pid {pid}")
            return EXIT_OK
        time.sleep(0.05)
    print("mpmctl: the master did not come up within 10 s (see the error log)", file=sys.stderr)
    return EXIT_FAIL


def _ask(config, payload: dict, timeout: float = 30.0) -> dict | None:
    try:
        return control.request(config.control.socket, payload, timeout)
    except (OSError, ValueError):
        return None


def _master_pid(config) -> int | None:
    pid = read_pid(config.control.pidfile)
    return pid if pid and pid_alive(pid) else None


def cmd_stop(args) -> int:
    config = _load_for_control(args)
    if config is None:
        return EXIT_FAIL
    pid = _master_pid(config)
    if pid is None:
        print("mpmctl: not running", file=sys.stderr)
        return EXIT_NOT_RUNNING
    if _ask(config, {"cmd": "stop", "now": args.now}, timeout=5) is None:
        os.kill(pid, signal.SIGINT if args.now else signal.SIGTERM)
    deadline = time.monotonic() + (2 if args.now else config.mpm.graceful_timeout) + 10
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(pid):
        print(f"mpmctl: master {pid} is still running", file=sys.stderr)
        return EXIT_FAIL
    print("stopped")
    return EXIT_OK


def _running(args):
    """(config, master pid) for a verb that changes a running server, or an exit status.
    The file must load: reload and upgrade check it here too, so the operator sees its
    errors at once."""
    config = _load(args)
    if config is None:
        return EXIT_FAIL
    pid = _master_pid(config)
    if pid is None:
        print("mpmctl: not running", file=sys.stderr)
        return EXIT_NOT_RUNNING
    return config, pid


def cmd_reload(args) -> int:
    found = _running(args)
    if isinstance(found, int):
        return found
    config, pid = found
    answer = _ask(config, {"cmd": "reload"})
    if answer is None:
        os.kill(pid, signal.SIGHUP)
        print("reload signalled (SIGHUP)")
        return EXIT_OK
    if not answer.get("ok"):
        print("\n".join(answer.get("errors", ["reload failed"])), file=sys.stderr)
        return EXIT_FAIL
    print(f"reloaded: generation {answer['generation']}")
    return EXIT_OK


def cmd_upgrade(args) -> int:
    """Hot upgrade: a new master from the installed code takes the sockets and the tunnels."""
    found = _running(args)
    if isinstance(found, int):
        return found
    config, old = found
    answer = _ask(config, {"cmd": "upgrade"})
    if answer is None or not answer.get("ok"):
        print("\n".join((answer or {}).get("errors", ["the master did not answer"])), file=sys.stderr)
        return EXIT_FAIL
    new = answer["new_master"]
    deadline = time.monotonic() + config.mpm.graceful_timeout + 40
    while time.monotonic() < deadline and (pid_alive(old) or read_pid(config.control.pidfile) != new):
        if not process_running(new):
            print(f"mpmctl: {_why_successor_went(config, old, new)}", file=sys.stderr)
            return EXIT_FAIL
        time.sleep(0.1)
    if pid_alive(old):
        print(f"mpmctl: master {old} is still finishing; {new} serves", file=sys.stderr)
        return EXIT_FAIL
    print(f"upgraded: master {old} -> {new}")
    return EXIT_OK


def _why_successor_went(config, old: int, new: int) -> str:
    """The new master is gone: it failed while the old one serves on, or a stop that came
    during the upgrade took both (the old master then says it is stopping, or it has
    stopped and removed its pidfile), or the old one died too."""
    if pid_alive(old):
        answer = _ask(config, {"cmd": "status"}, timeout=3)
        state = answer.get("state") if answer else None
        if state == "running":
            return f"the new master {new} exited; {old} still serves"
        if state is None:       # a stopping master closes its control socket: see how it ends
            deadline = time.monotonic() + 5.0
            while pid_alive(old) and time.monotonic() < deadline:
                time.sleep(0.05)
        if pid_alive(old):
            return f"upgrade abandoned: a stop came during it; the new master {new} exited, {old} is stopping"
    if read_pid(config.control.pidfile) is None:
        return f"upgrade abandoned: a stop came during it; the new master {new} and master {old} have stopped"
    return f"the new master {new} exited and master {old} is gone too: nothing serves"


def cmd_status(args) -> int:
    config = _load_for_control(args)
    if config is None:
        return EXIT_FAIL
    answer = _ask(config, {"cmd": "status"}, timeout=10)
    if answer is None:
        pid = _master_pid(config)
        print(f"mpmctl: master pid {pid} does not answer on {config.control.socket}" if pid
              else "mpmctl: not running", file=sys.stderr)
        return EXIT_NOT_RUNNING if pid is None else EXIT_FAIL
    if args.json:
        print(json.dumps(answer, indent=2))
        return EXIT_OK
    print(_format_status(answer))
    return EXIT_OK


def _size(n: float) -> str:
    for unit in ("B", "K", "M", "G"):
        if n < 1024:
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}T"


def _h2(row: dict) -> str:
    """HTTP/2 connections / the streams open on them."""
    return f"{row.get('h2_connections', 0)}/{row.get('h2_streams', 0)}"


def _format_status(s: dict) -> str:
    lines = [
        f"master pid {s['master_pid']}  generation {s['generation']}  up {s['uptime']:.0f}s  {s['state']}",
        f"config     {s['config']}",
        f"listeners  {', '.join(s['listeners'])}",
        "",
        f"{'PID':>7} {'GEN':>4} {'SLOT':>4} {'STATE':<9} {'CONNS':>6} {'TUNNELS':>7} {'H2 CONN/STRM':>12} "
        f"{'REQUESTS':>9} {'IN':>8} {'OUT':>8} {'RSS':>7} {'CPU s':>7} {'TLS FULL':>9} {'RESUMED':>9}",
    ]
    for w in s["workers"]:
        lines.append(f"{w['pid']:>7} {w['generation']:>4} {w['slot']:>4} {w['state']:<9} {w['connections']:>6} "
                     f"{w['tunnels']:>7} {_h2(w):>12} {w['requests']:>9} {_size(w['bytes_in']):>8} "
                     f"{_size(w['bytes_out']):>8} {_size(w['rss']):>7} {w['cpu_seconds']:>7.1f} "
                     f"{w.get('tls_full', 0):>9} {w.get('tls_resumed', 0):>9}")
    t = s["totals"]
    lines.append(f"{'total':>7} {'':>4} {'':>4} {'':<9} {t['connections']:>6} {t['tunnels']:>7} {_h2(t):>12} "
                 f"{t['requests']:>9} {_size(t['bytes_in']):>8} {_size(t['bytes_out']):>8} {_size(t['rss']):>7} "
                 f"{'':>7} {t.get('tls_full', 0):>9} {t.get('tls_resumed', 0):>9}")
    if s.get("tls"):
        lines.append(_format_tls(s["tls"], t))
    if s.get("old_generation_workers"):
        lines.append(f"\n{s['old_generation_workers']} worker(s) of older generations still finishing")
    return "\n".join(lines)


def _format_tls(tls: dict, totals: dict) -> str:
    """One line: how many handshakes resumed a session since the master started (reloads
    included: the workers' columns above count the live ones only), and where the ticket
    keys come from."""
    counts = tls.get("handshakes") or {"full": totals.get("tls_full", 0), "resumed": totals.get("tls_resumed", 0),
                                       "failed": totals.get("tls_failures", 0)}
    done = counts["full"] + counts["resumed"]
    rate = f"{100 * counts['resumed'] / done:.0f}% of {done} handshakes resumed" if done else \
        "no TLS handshakes yet"
    if tls.get("ticket_keys") != "shared":
        return f"\ntls        {rate}; ticket keys per generation ({tls.get('why')})"
    rotation = f", rotated every {tls['rotation']:g}s" if tls.get("rotation") else ""
    return (f"\ntls        {rate}; ticket keys {tls['source']} ({tls['keys']} in use, current one "
            f"{tls['key_age'] or 0:.0f}s old{rotation}, {tls['rotations']} rotations), {counts['failed']} "
            "failed handshakes")


def cmd_balancer(args) -> int:
    """balancer-manager: list balancers and members, or `set NAME MEMBER drain|disable|enable|weight N`."""
    config = _load_for_control(args)
    if config is None:
        return EXIT_FAIL
    words = args.action
    if words and (words[0] != "set" or len(words) < 4):
        print("usage: mpmctl balancer [--json] [set NAME MEMBER drain|disable|enable|hot-standby|weight N]",
              file=sys.stderr)
        return EXIT_FAIL
    answer = _ask(config, {"cmd": "balancer", "set": words[1:]} if words else {"cmd": "balancer"}, timeout=10)
    if answer is None:
        pid = _master_pid(config)
        print(f"mpmctl: master pid {pid} does not answer on {config.control.socket}" if pid
              else "mpmctl: not running", file=sys.stderr)
        return EXIT_NOT_RUNNING if pid is None else EXIT_FAIL
    if not answer.get("ok"):
        print("\n".join(answer.get("errors", ["refused"])), file=sys.stderr)
        return EXIT_FAIL
    if args.json:
        print(json.dumps(answer, indent=2))
    elif words:
        m = answer["member"]
        print(f"balancer {answer['balancer']} member {m['url']}: {m['status']}, weight {m['weight']}, {m['state']}")
    else:
        print(_format_balancers(answer["balancers"]))
    return EXIT_OK


def _format_balancers(balancers: list) -> str:
    if not balancers:
        return "no balancers configured"
    lines = []
    for b in balancers:
        sticky = b["sticky"] and (b["sticky"] + (f"|{b['sticky_param']}" if b.get("sticky_param") else "")
                                  + (" (insert)" if b["sticky_insert"] else "")
                                  + (" nofailover" if b["nofailover"] else ""))
        hc = b["health"]
        check = "passive only" if hc is None else \
            f"{hc['method']} {hc['path'] or ''} every {hc['interval']:g}s".replace("  ", " ")
        lines.append(f"balancer://{b['name']}  method {b['method']}  sticky {sticky or '-'}  "
                     f"retry {b['retry']:g}s  health {check}")
        if b.get("discover"):
            found = sum(1 for m in b["members"] if m["source"] != "static")
            lines.append("  " + _format_discovery(b["discover"], found))
        lines.append(f"  {'MEMBER':<28} {'ROUTE':<11} {'STATUS':<12} {'STATE':<8} {'WEIGHT':>6} {'BUSY':>5} "
                     f"{'REQUESTS':>9} {'TRAFFIC':>8} {'FAILS':>6} {'MAX':>5}  {'FROM':<18} CHECK")
        for m in b["members"]:
            state = m["state"] + (f" {m['error_for']:.0f}s" if m["state"] == "error" else "")
            check = m["check"]["last"] + (f" {m['check']['age']:.0f}s ago" if m["check"]["age"] is not None else "")
            source = "static" if m["source"] == "static" else \
                "dns, " + (f"left {m['leaving_for']:.0f}s ago" if m["leaving_for"] is not None
                           else f"seen {m['seen']:.0f}s ago")
            lines.append(f"  {m['url']:<28} {m['route'] or '-':<11} {m['status']:<12} {state:<8} {m['weight']:>6} "
                         f"{m['busy']:>5} {m['requests']:>9} {_size(m['bytes']):>8} {m['failures']:>6} "
                         f"{m['max_connections'] or '-':>5}  {source:<18} {check}")
        lines.append("")
    return "\n".join(lines).rstrip()


def _format_discovery(d: dict, listed: int) -> str:
    """One line: what is asked, how it went."""
    asked = f"{d['type']} {d['dns']}" + (f" port {d['port']}" if d["port"] else "")
    if d.get("fixed"):
        return f"discover {asked}: an IP address, never asked: {listed} member"
    answered = f"last answer {d['answered']:.0f}s ago" if d["answered"] is not None else "no answer yet"
    every = f"every {d['interval']:g}s"
    if d.get("next_lookup", 0) > d["interval"]:          # the records' TTL stretched it (up to max_ttl)
        every += f" (TTL: next in {d['next_lookup']:.0f}s)"
    line = (f"discover {asked} via {', '.join(d['resolvers'])} {every}: {listed} members "
            f"in {d['slots']} slots, {answered}, {d['failures']} failed lookups")
    if d["left_out"]:
        line += f", {d['left_out']} records left out (slots)"
    if d["failing"]:
        line += f"; failing now: {d['last_error']}"
    return line


def cmd_import_apache(args) -> int:
    from mpm.apache import import_apache  # imported here: the other verbs stay light
    return import_apache(args.file, args.output, args.strict, tuple(args.define or ()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mpmctl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, helptext in (("start", "run the master (foreground unless -d)"),
                           ("stop", "graceful stop (--now: immediate)"),
                           ("reload", "graceful reload into a new generation"),
                           ("upgrade", "hot upgrade: re-exec the master, keep sockets and tunnels"),
                           ("status", "show the master and its workers"),
                           ("balancer", "balancer members and their state; set NAME MEMBER drain|disable|"
                                        "enable|weight N"),
                           ("configtest", "check a config file")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("-c", "--config", help="config file (default: the embedded conf/default.yaml)")
        if name == "start":
            p.add_argument("-d", "--detach", action="store_true", help="detach and write the pidfile")
        if name == "stop":
            p.add_argument("--now", action="store_true", help="immediate stop (SIGINT)")
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


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "config", None) is not None:
        args.config = os.path.abspath(args.config)
    return globals()["cmd_" + args.command.replace("-", "_")](args)


if __name__ == "__main__":
    sys.exit(main())
