"""HAProxy as a real PROXY protocol peer (Debian's /usr/sbin/haproxy; CI installs it).

`HAProxy(tmp_path, config)` writes `config` (the frontends and backends; the global and
defaults sections are ours), runs it in the foreground (`-db`) and waits until every bound
port answers; `close()` stops it by pid.  Without HAProxy the tests that need it skip, unless
CI is set: then they fail, because CI must run them."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest
from support import terminate

HEAD = """global
    maxconn 4096
defaults
    timeout connect 5s
    timeout client 30s
    timeout server 30s
"""


def haproxy_binary() -> str:
    for candidate in ("/usr/sbin/haproxy", shutil.which("haproxy")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    reason = "HAProxy is not installed (Debian: apt-get install haproxy); the PROXY protocol tests need it"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}, and CI is set: CI must run this test")
    pytest.skip(reason)


class HAProxy:
    def __init__(self, directory, config: str, ports: list[int]):
        binary = haproxy_binary()
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(str(directory), "haproxy.cfg")
        with open(self.path, "w") as f:
            f.write(HEAD + config)
        check = subprocess.run([binary, "-c", "-f", self.path], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        self.log = open(os.path.join(str(directory), "haproxy.log"), "wb")
        self.proc = subprocess.Popen([binary, "-db", "-f", self.path], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        for port in ports:
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert self.proc.poll() is None, f"haproxy exited: {self.output()}"
                    assert time.monotonic() < deadline, f"haproxy does not listen on {port}: {self.output()}"
                    time.sleep(0.05)

    def output(self) -> str:
        with open(self.log.name, "rb") as f:
            return f.read().decode(errors="replace")

    def close(self) -> None:
        terminate(self.proc, 5)
        self.log.close()
