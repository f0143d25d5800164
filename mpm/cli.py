"""mpmctl: start | stop [--now] | reload | upgrade | status [--json] | balancer | configtest, each with
-c FILE;
import-apache FILE [-o OUT.yaml] [--strict] (an httpd configuration -> this proxy's YAML).

Without -c the embedded conf/default.yaml is used.  stop/reload/status talk to the
master over the control socket (JSON lines) and fall back to the pidfile and signals
when the socket does not answer.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time

from conf import ConfigError, control_only_config, load_config
from mpm import control, masterlog
from mpm.cliparser import build_parser
from mpm.pidfile import AlreadyRunning, master_serving, pid_alive, process_running, read_pid
from mpm.statustext import format_balancers, format_status
from mpm.upgrade import FALL_BACK_WAIT

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
    from mpm.upgrade import CannotTakeOver
    masterlog.setup(config)
    try:
        return Master(args.config, config).run()
    except AlreadyRunning as exc:
        print(f"mpmctl: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except CannotTakeOver as exc:
        logging.getLogger("mpm.master").error("cannot start: %s", exc)
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


def _master_pid(config, verb: str) -> int | None:
    """The master the file's pidfile names, or else the one serving the file under the control
    paths it had when that master started: `stop` and `reload` signal it then; the other verbs
    need its control socket, which is elsewhere (review 2026-12-04-readme F3)."""
    pid = read_pid(config.control.pidfile)
    if pid and pid_alive(pid):
        return pid
    pid = master_serving(config.file)
    if pid is not None:
        then = "signalled instead" if verb in ("stop", "reload") else \
            f"`mpmctl {verb}` needs the socket it listens on (stop and start it to move the paths)"
        print(f"mpmctl: master pid {pid} serves {config.file} with the control paths it started with, not the "
              f"file's (they change at its next start): {then}", file=sys.stderr)
    return pid


def cmd_stop(args) -> int:
    found = _running(args, "stop", _load_for_control)
    if isinstance(found, int):
        return found
    config, pid = found
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


def cmd_reopen(args) -> int:
    """Log rotation: every log file opened afresh at its path, the configuration not read (a
    broken one does not stop it) and no connection touched.  Never a signal of ours when the
    socket does not answer: a master of a release before `reopen` dies of SIGUSR2 (review
    2026-12-04-today #4); its answer "unknown command" is said as it is."""
    found = _running(args, "reopen", _load_for_control)
    if isinstance(found, int):
        return found
    config, pid = found
    answer = _ask(config, {"cmd": "reopen"}, timeout=10)
    if answer is None:
        print(f"mpmctl: master pid {pid} does not answer on {config.control.socket}; `kill -USR2 {pid}` "
              "reopens the logs of a master that knows `reopen`", file=sys.stderr)
        return EXIT_FAIL
    if not answer.get("ok"):
        print("\n".join(answer.get("errors", ["reopen failed"])) + " (a master before `reopen`: `mpmctl reload` "
              "reopens its logs)", file=sys.stderr)
        return EXIT_FAIL
    print(f"logs reopened ({answer.get('workers', 0)} workers told)")
    return EXIT_OK


def _running(args, verb: str, load=_load):
    """(config, master pid) for a verb that changes a running server, or an exit status.
    The file must load: reload and upgrade check it here too, so the operator sees its
    errors at once; stop and reopen pass `_load_for_control`, which finds the master while
    the file is being edited and broken."""
    config = load(args)
    if config is None:
        return EXIT_FAIL
    pid = _master_pid(config, verb)
    if pid is None:
        print("mpmctl: not running", file=sys.stderr)
        return EXIT_NOT_RUNNING
    return config, pid


def cmd_reload(args) -> int:
    found = _running(args, "reload")
    if isinstance(found, int):
        return found
    config, pid = found
    try:
        answer = control.request(config.control.socket, {"cmd": "reload", "config": os.path.realpath(config.file),
                                                         "wait": args.wait}, args.wait)
    except TimeoutError:
        # It took the request and never answered (hung, or a reload slower than --wait): a
        # SIGHUP now would queue a second reload behind the first (review 2026-12-03-reload #2).
        print(f"mpmctl: master pid {pid} took the reload request but did not answer within {args.wait:g} s "
              "(see the error log)", file=sys.stderr)
        return EXIT_FAIL
    except ValueError:
        # It took the request and closed without an answer: as for a timeout, no SIGHUP (a second reload).
        print(f"mpmctl: master pid {pid} took the reload request and closed the connection without an answer "
              "(see the error log)", file=sys.stderr)
        return EXIT_FAIL
    except OSError:
        answer = None
    if answer is None:
        os.kill(pid, signal.SIGHUP)
        print("reload signalled (SIGHUP)")
        return EXIT_OK
    if not answer.get("ok"):
        print("\n".join(answer.get("errors", ["reload failed"])), file=sys.stderr)
        return EXIT_FAIL
    for warning in answer.get("warnings", []):
        print(f"mpmctl: {warning}", file=sys.stderr)
    print(f"reloaded: generation {answer['generation']}")
    return EXIT_OK


def cmd_upgrade(args) -> int:
    """Hot upgrade: a new master from the installed code takes the sockets and the tunnels."""
    found = _running(args, "upgrade")
    if isinstance(found, int):
        return found
    config, old = found
    answer = _ask(config, {"cmd": "upgrade", "config": os.path.realpath(config.file)})
    if answer is None or not answer.get("ok"):
        print("\n".join((answer or {}).get("errors", ["the master did not answer"])), file=sys.stderr)
        return EXIT_FAIL
    new = answer["new_master"]
    deadline = time.monotonic() + config.mpm.graceful_timeout + 40
    handed = False          # the pidfile named the new master: the hand-over happened
    while time.monotonic() < deadline and (pid_alive(old) or read_pid(config.control.pidfile) != new):
        handed = handed or read_pid(config.control.pidfile) == new
        if not process_running(new):
            return _successor_gone(config, old, new, handed)
        time.sleep(0.1)
    if not process_running(new):    # it died right after the hand-over, and the old master has ended
        return _successor_gone(config, old, new, True)
    if pid_alive(old):
        print(f"mpmctl: master {old} is still finishing; {new} serves", file=sys.stderr)
        return EXIT_FAIL
    print(f"upgraded: master {old} -> {new}")
    return EXIT_OK


def _successor_gone(config, old: int, new: int, handed: bool) -> int:
    current = read_pid(config.control.pidfile)
    if current not in (None, old, new) and pid_alive(current):
        # Another upgrade took over from ours (review 2026-12-03-upgrade #4): its status
        # answer is not the old master's.
        print(f"upgraded: master {old} -> {new}, since replaced by master {current} (another upgrade)")
        return EXIT_OK
    print(f"mpmctl: {_why_successor_went(config, old, new, handed)}", file=sys.stderr)
    return EXIT_FAIL


def _why_successor_went(config, old: int, new: int, handed: bool = False) -> str:
    """The new master is gone: it failed while the old one serves on, or died after the
    hand-over and the old one took the service back (`handed`: upgrade.fall_back, within a few
    of its passes, its control socket the dead master's until then), or a stop that came
    during the upgrade took both (the old master then says it is stopping, or it has stopped
    and removed its pidfile), or the old one died too."""
    if pid_alive(old):
        deadline = time.monotonic() + (FALL_BACK_WAIT + 2.0 if handed else 0.0)
        while True:
            answer = _ask(config, {"cmd": "status"}, timeout=3)
            state = answer.get("state") if answer else None
            if state == "running" or time.monotonic() >= deadline or not pid_alive(old):
                break
            time.sleep(0.1)
        if state == "running":
            return (f"the new master {new} exited after it took over; {old} took the service back" if handed
                    else f"the new master {new} exited; {old} still serves")
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
        pid = _master_pid(config, "status")
        print(f"mpmctl: master pid {pid} does not answer on {config.control.socket}" if pid
              else "mpmctl: not running", file=sys.stderr)
        return EXIT_NOT_RUNNING if pid is None else EXIT_FAIL
    if args.json:
        print(json.dumps(answer, indent=2))
        return EXIT_OK
    print(format_status(answer))
    return EXIT_OK


def cmd_balancer(args) -> int:
    """balancer-manager: list balancers and members, or `set NAME MEMBER drain|disable|enable|hot-standby|weight N`."""
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
        pid = _master_pid(config, "balancer")
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
        print(format_balancers(answer["balancers"]))
    return EXIT_OK


def cmd_import_apache(args) -> int:
    from mpm.apache import import_apache  # imported here: the other verbs stay light
    return import_apache(args.file, args.output, args.strict, tuple(args.define or ()))


def main(argv=None) -> int:
    args = build_parser(__doc__.split("\n\n")[0]).parse_args(argv)
    if getattr(args, "config", None) is not None:
        args.config = os.path.abspath(args.config)
    command = globals()["cmd_" + args.command.replace("-", "_")]
    if args.command == "start":          # the master: what escapes it is a fault to see whole
        return command(args)
    try:
        return command(args)
    except BrokenPipeError:
        # `mpmctl status --json | head`: the reader left.  No traceback, and none either when
        # the interpreter flushes stdout at exit (the signal module's "Note on SIGPIPE").
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
