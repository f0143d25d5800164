"""The programs the benchmark uses but does not ship, and what to tell the operator when one is missing.

Every lookup of an outside program goes through ``which`` so that one environment variable,
``MPM_BENCH_HIDE=wrk,gcc,...``, shows what a machine without them gets (the test suite uses
it; uninstalling system packages to find out is not an option on a shared machine).

What a missing tool costs, and nothing more (issue #13):
    wrk          S1/S2 use the built-in HTTP generator; S7c (TLS handshakes) is skipped
    gcc          the Python WebSocket generator runs instead of the C one (the report says so)
    libssl-dev   the C generator is built for ws:// only; wss:// cells use the Python one
    openssl      the certificate comes from Python's cryptography; with neither, S7 is skipped
    nginx, haproxy, apache2   that peer is "not measured"
    matplotlib   no PNG plots
None of these is a failure: the exit status counts only cells that ran and failed.
"""

from __future__ import annotations

import importlib.util
import os
import shutil

SBIN = "/usr/local/sbin:/usr/sbin:/sbin"     # nginx, haproxy and apache2 live here, often off a user's PATH
INSTALL = "install it with `python -m bench --setup`, which runs bench/setup"


def hidden() -> set[str]:
    return {name.strip() for name in os.environ.get("MPM_BENCH_HIDE", "").split(",") if name.strip()}


def which(name: str) -> str | None:
    """The program's path, on PATH or in the sbin directories; None when missing (or hidden)."""
    if os.path.basename(name) in hidden():
        return None
    return shutil.which(name) or shutil.which(name, path=SBIN)


def has_module(name: str) -> bool:
    return name not in hidden() and importlib.util.find_spec(name) is not None


def cert_maker() -> str | None:
    """What can make S7's throw-away certificate: the openssl program, else Python's cryptography."""
    if which("openssl"):
        return "openssl"
    return "cryptography" if has_module("cryptography") else None


def missing_for(needs: tuple[str, ...]) -> str | None:
    """Why a scenario that needs these tools cannot run here ("needs wrk: install it ..."), or None."""
    absent = [t for t in needs if not (cert_maker() if t == "certificate" else which(t))]
    if not absent:
        return None
    names = ["openssl" if t == "certificate" else t for t in absent]
    return f"needs {', '.join(names)}: {INSTALL}"
