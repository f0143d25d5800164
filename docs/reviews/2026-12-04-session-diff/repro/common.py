"""Shared: start a real mpm-proxy (tests/proxyproc.Proxy) and an h11 backend (tests/backends)."""
import os, sys, socket, time, tempfile
# A snapshot of HEAD (git archive HEAD | tar -x -C /tmp/head-tree): the working tree is being edited.
ROOT = os.environ.get("REVIEW_ROOT", "/tmp/head-tree")
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)
from proxyproc import Proxy            # noqa: E402
from backends import HttpBackend       # noqa: E402


def start(routes, workers=1, **sections):
    d = tempfile.mkdtemp(prefix="review-")
    p = Proxy(d, routes, workers=workers, **sections)
    p.start()
    return p


def get(proxy, target=b"/", extra=b"", timeout=60):
    t = time.monotonic()
    with proxy.connect(timeout=timeout) as s:
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n" + extra + b"Connection: close\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return (int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else None), time.monotonic() - t
