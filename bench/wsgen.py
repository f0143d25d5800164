"""Which WebSocket load generator runs: the C one (bench/loadgen_ws.c), built here with gcc, or the
Python one (bench/loadgen_ws.py) where there is no compiler (or with ``--ws-gen python``).

Both speak the same stdin/stdout protocol and make the same checks, so the harness drives
either alike; the report names the one that ran (``describe``) and every cell records its
own (``name``). The C generator exists because the Python one spent more CPU per 64-byte
message than the proxies it measured (issue #13). It is built by bench/setup, or here on
first use when its binary is missing or older than its source: with OpenSSL when the headers
are there (wss:// too), else for ws:// only, and then the TLS cells (S7a/S7b) use Python.

    python -m bench.wsgen        build (or rebuild) it now and say what was built
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from bench import procs, tools

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = [os.path.join(HERE, name) for name in ("loadgen_ws.c", "loadgen_ws_conn.c", "loadgen_ws.h")]
BINARY = os.path.join(HERE, "build", "loadgen_ws")
CFLAGS = ["-O2", "-Wall", "-Wextra"]
TLS_FLAGS = (["-DWITH_OPENSSL"], ["-lssl", "-lcrypto"])


@dataclass
class Generator:
    binary: str | None      # the C generator, or None: Python everywhere
    tls: bool               # the binary speaks wss://
    why_python: str         # why Python runs where it does (empty: it does not)
    openssl: str = ""

    def name(self, url: str) -> str:
        return "C" if self.uses_c(url) else "Python"

    def uses_c(self, url: str) -> bool:
        return self.binary is not None and (self.tls or not url.startswith("wss:"))

    def argv(self, url: str, conns: int, size: int, duration: float) -> list[str]:
        head = [self.binary] if self.uses_c(url) else [procs.python(), "-m", "bench.loadgen_ws"]
        return [*head, "--url", url, "--conns", str(conns), "--size", str(size), "--duration", str(duration)]

    def describe(self) -> str:
        if self.binary is None:
            return f"bench/loadgen_ws.py (Python: {self.why_python})"
        if self.tls:
            return f"bench/loadgen_ws.c (C; wss:// with {' '.join(self.openssl.split()[:2]) or 'OpenSSL'})"
        return f"bench/loadgen_ws.c (C) for ws://; bench/loadgen_ws.py (Python) for wss:// ({self.why_python})"


def build(out: str | None = None) -> tuple[bool, str]:
    """Compile the C generator into ``out`` (atomically: two runs may build at once); (ok, message)."""
    out = out or BINARY
    gcc = tools.which("gcc")
    if not gcc:
        return False, f"no gcc: {tools.INSTALL}"
    os.makedirs(os.path.dirname(out), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(out), prefix=".loadgen_ws-")
    os.close(fd)
    errors = ""
    try:
        # With OpenSSL first; without it when its headers (libssl-dev) are missing.
        for defines, libs in (TLS_FLAGS, ([], [])):
            argv = [gcc, *CFLAGS, *defines, "-o", tmp, *SOURCES[:2], *libs, "-lm"]
            try:
                done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
            except (OSError, subprocess.TimeoutExpired) as exc:
                return False, f"gcc failed: {exc}"
            if done.returncode == 0:
                os.replace(tmp, out)
                return True, " ".join(argv).replace(tmp, out)
            lines = done.stderr.strip().splitlines()
            errors = lines[-1] if lines else f"status {done.returncode}"
        return False, f"gcc failed: {errors}"
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def features(binary: str) -> dict | None:
    try:
        out = subprocess.run([binary, "--features"], capture_output=True, text=True, timeout=10)
        return json.loads(out.stdout)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


def stale(binary: str | None = None) -> bool:
    binary = binary or BINARY
    return not os.path.exists(binary) or os.path.getmtime(binary) < max(map(os.path.getmtime, SOURCES))


def choose(prefer: str = "auto") -> Generator:
    """The generator for this run: ``prefer`` is auto (C when it can be had), c or python."""
    if prefer == "python":
        return Generator(None, False, "chosen with --ws-gen python")
    if stale():
        ok, why = build()
        if not ok:
            return Generator(None, False, why)
    found = features(BINARY)
    if found is None:
        return Generator(None, False, f"{BINARY} does not run")
    if found.get("tls"):
        return Generator(BINARY, True, "", found.get("openssl", ""))
    return Generator(BINARY, False, "the C generator was built without OpenSSL: apt-get install libssl-dev "
                     "(bench/setup) and run `python -m bench.wsgen`")


_chosen: Generator | None = None


def use(prefer: str = "auto") -> Generator:
    """Choose the generator for this run (runner.run does it once); the scenarios read ``current``."""
    global _chosen
    _chosen = choose(prefer)
    return _chosen


def current() -> Generator:
    return _chosen or use()


def main() -> int:
    ok, message = build()
    print(message)
    if ok:
        print(f"built {BINARY}: {json.dumps(features(BINARY))}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
