"""Every process the harness starts, and the promise that each one is stopped, by pid.

Processes are started in their own session (so a Ctrl-C in the terminal reaches only the
harness, which then stops them in order) and recorded here; ``stop_all`` runs from
``finally`` blocks, from ``atexit`` and on SIGTERM/SIGHUP. Stopping is polite first: the
signal the program documents for stopping, then SIGKILL to the process group it leads (its
own workers, never anything else).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

_started: list[subprocess.Popen] = []
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # so "python -m bench.x" works from any cwd


def child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def spawn(argv: list[str], *, log: str | None = None, stdin=subprocess.DEVNULL, stdout=None,
          env: dict | None = None, cwd: str | None = None) -> subprocess.Popen:
    """Start ``argv`` in a new session; stdout/stderr go to ``log`` unless ``stdout`` is given."""
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout if stdout is not None else out,
                                stderr=out, env=env if env is not None else child_env(), cwd=cwd,
                                start_new_session=True, bufsize=0)
    finally:
        if log:
            out.close()
    _started.append(proc)
    return proc


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 8.0) -> int | None:
    """Stop one started process by pid: ``sig``, then SIGKILL to its process group."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    # Whatever is left in the group it led (workers of a master that died): SIGKILL.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None and not stream.closed:
            _pending.pop(stream.fileno(), None)
            with contextlib.suppress(OSError):
                stream.close()
    if proc in _started:
        _started.remove(proc)
    return proc.returncode


def stop_all() -> None:
    for proc in reversed(list(_started)):
        stop(proc, timeout=3.0)


def _on_signal(signum, _frame):
    raise SystemExit(128 + signum)


def install_cleanup() -> None:
    atexit.register(stop_all)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free now (for programs that need a number in their config)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 15.0,
              host: str = "127.0.0.1") -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


_pending: dict[int, bytes] = {}


def read_line(proc: subprocess.Popen, timeout: float) -> str | None:
    """One line of a child's stdout (spawned with ``stdout=PIPE``, bufsize 0), or None on timeout/EOF.

    Reads the pipe with os.read after select, keeping any bytes past the line for the next
    call, so a line that arrived together with the previous one is never stuck in a buffer
    select cannot see.
    """
    fd = proc.stdout.fileno()
    buf = _pending.get(fd, b"")
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            _pending[fd] = buf
            return None
        chunk = os.read(fd, 65536)
        if not chunk:
            _pending.pop(fd, None)
            return buf.decode(errors="replace") or None
        buf += chunk
    line, _, rest = buf.partition(b"\n")
    _pending[fd] = rest
    return line.decode(errors="replace") + "\n"


def read_json(proc: subprocess.Popen, timeout: float) -> dict | None:
    """The next JSON line of a child (skipping anything else it printed), or None."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        line = read_line(proc, left)
        if line is None:
            return None
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue


def python() -> str:
    return sys.executable


def send_line(proc: subprocess.Popen, text: str) -> bool:
    """Write one command line to a child's stdin (spawned with ``stdin=PIPE``)."""
    try:
        proc.stdin.write(text.encode() + b"\n")
        return True
    except (BrokenPipeError, OSError, ValueError):
        return False
