"""Shared by the repro scripts: which checkout to test, and a real master on a free port.

MPM_ROOT names the checkout (default: the one holding this file).  Run with that checkout's
venv Python, e.g.  MPM_ROOT=/tmp/review-conf /work/main/.venv/bin/python r01_....py"""
import os
import socket
import sys
import tempfile
import time

sys.dont_write_bytecode = True
os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
ROOT = os.environ.get("MPM_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
sys.path[:0] = [os.path.join(ROOT, "tests"), ROOT]

from backends import HttpBackend          # noqa: E402  (the project's own test helpers)
from proxyproc import Proxy, raw_exchange  # noqa: E402


def workdir() -> str:
    return tempfile.mkdtemp(prefix="conf-review-")


def get(proxy, path="/", timeout=5.0) -> bytes:
    try:
        return raw_exchange(proxy, b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                            timeout)
    except OSError as exc:
        return f"OSError {exc}".encode()


def load(text: str):
    """load_config on `text` written to a fresh file: ("OK", config) or ("ERR", message)."""
    from conf import ConfigError, load_config
    path = os.path.join(workdir(), "mpm.yaml")
    with open(path, "w") as f:
        f.write(text)
    try:
        return "OK", load_config(path)
    except ConfigError as exc:
        return "ERR", str(exc)


def verdict(ok: bool, detail: str = "") -> None:
    print(("PASS" if ok else "FAIL") + (f": {detail}" if detail else ""))
    sys.exit(0 if ok else 1)
