"""Shared setup for the upgrade fall-back repros (not a repro itself)."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests"))
os.chdir(ROOT)

import psutil  # noqa: E402
from backends import HttpBackend  # noqa: E402
from proxyproc import Proxy  # noqa: E402
from support import wait_for  # noqa: E402


def body(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def served(proxy, timeout=2.0):
    try:
        return body(proxy.url("/"), timeout)
    except OSError:
        return None


def pidfile(proxy):
    try:
        with open(os.path.join(proxy.dir, "run", "mpm.pid")) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def alive(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start(slow_seconds=4.0, workers=1, **sections):
    """A proxy (1 worker) busy with one slow request, and `mpmctl upgrade` under way."""
    def handler(request, _body):
        if request["target"].startswith("/slow"):
            time.sleep(float(request["target"].split("=")[1]) if "=" in request["target"] else slow_seconds)
        return 200, [], b"ok"
    backend = HttpBackend(handler)
    proxy = Proxy(tempfile.mkdtemp(prefix="fallback-review-"), [{"path": "/", "to": backend.url + "/"}],
                  workers=workers, **sections)
    proxy.start()
    return proxy, backend


def slow_request(proxy, path="/slow"):
    result = {}

    def run():
        try:
            result["body"] = body(proxy.url(path), 60)
        except OSError as exc:
            result["error"] = repr(exc)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def upgrade(proxy):
    return subprocess.Popen([sys.executable, "-m", "mpm", "upgrade", "-c", proxy.config_path], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def mpm_processes(directory):
    """Every live process whose command line or title names this proxy's directory."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and directory in " ".join(proc.info["cmdline"] or ()):
                found.append(proc.info["pid"])
        except psutil.Error:
            pass
    return found


def cleanup(proxy, backend, *pids):
    """Stop everything this repro started, by pid."""
    import signal
    for pid in {*pids, pidfile(proxy) or 0, *mpm_processes(proxy.dir)} - {0}:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proxy.proc.wait(10)
    except Exception:
        pass
    backend.close()
