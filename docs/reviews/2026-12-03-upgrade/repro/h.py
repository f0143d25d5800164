"""Shared harness for the upgrade review's repro scripts: a real master (tests/proxyproc.Proxy),
a real backend (tests/backends.HttpBackend), and small helpers.  Everything started is
stopped by pid at exit."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)

from backends import HttpBackend  # noqa: E402
from proxyproc import Proxy  # noqa: E402
from support import free_port, wait_for  # noqa: E402

PY = os.path.join(ROOT, ".venv", "bin", "python")
started: list = []
_started = started
_dirs: list = []


def tmpdir(prefix="upg-") -> str:
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o755)
    _dirs.append(d)
    return d


def backend(body=b"hello"):
    b = HttpBackend(lambda req, _body: (200, [("Content-Type", "text/plain")], body))
    _started.append(b)
    return b


def proxy(routes, workers=1, **sections) -> Proxy:
    p = Proxy(tmpdir(), routes, workers=workers, **sections)
    _started.append(p)
    p.start()
    return p


def get(url, timeout=3.0):
    """(status, body) or (None, error text)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except Exception as e:  # noqa: BLE001
        return None, repr(e)


def master_pid(p: Proxy) -> int:
    return p.proc.pid


def children(pid: int) -> list[int]:
    import psutil
    try:
        return [c.pid for c in psutil.Process(pid).children()]
    except psutil.NoSuchProcess:
        return []


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def result(ok: bool, what: str) -> None:
    print(("PASS" if ok else "FAIL") + ": " + what)


@atexit.register
def _cleanup():
    for thing in reversed(_started):
        try:
            if isinstance(thing, Proxy):
                if thing.proc is not None and thing.proc.poll() is None:
                    try:
                        thing.stop()
                    except Exception:  # noqa: BLE001
                        for pid in [thing.proc.pid, *children(thing.proc.pid)]:
                            try:
                                os.kill(pid, signal.SIGKILL)
                            except ProcessLookupError:
                                pass
                        thing.proc.wait(5)
            else:
                thing.close()
        except Exception as e:  # noqa: BLE001
            print("cleanup:", e, file=sys.stderr)
    for d in _dirs:
        shutil.rmtree(d, ignore_errors=True)


# --- upgrade helpers ----------------------------------------------------------------------
def pidfile(p: Proxy) -> int | None:
    try:
        return int(open(os.path.join(p.dir, "run", "mpm.pid")).read().strip())
    except (OSError, ValueError):
        return None


def track(p: Proxy, *pids) -> None:
    """Remember pids (new masters, their workers) so the cleanup kills them by pid."""
    _extra.extend((p, pid) for pid in pids if pid)


_extra: list = []


def family(pid: int) -> list[int]:
    import psutil
    try:
        proc = psutil.Process(pid)
        return [pid] + [c.pid for c in proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def upgrade(p: Proxy, timeout=60) -> subprocess.CompletedProcess:
    return p.mpmctl("upgrade", timeout=timeout)


def run_files(p: Proxy) -> list[str]:
    return sorted(os.listdir(os.path.join(p.dir, "run")))


@atexit.register
def _cleanup_extra():
    import psutil
    for p, pid in _extra:
        for q in family(pid):
            try:
                if psutil.Process(q).status() != psutil.STATUS_ZOMBIE:
                    os.kill(q, signal.SIGKILL)
            except (psutil.NoSuchProcess, ProcessLookupError):
                pass
