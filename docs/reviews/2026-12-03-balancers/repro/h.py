"""Shared harness for the repros: real members (tests/balancer_util.Member) and a real mpm proxy
(tests/proxyproc.Proxy), stopped at exit by pid."""
import atexit, os, socket, sys, tempfile, time
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)
from balancer_util import Member, members_section  # noqa: E402,F401
from proxyproc import Proxy  # noqa: E402


def start_proxy(routes, workers=1, **sections):
    p = Proxy(tempfile.mkdtemp(prefix="lbrepro-"), routes, workers=workers, **sections)
    p.start()
    atexit.register(p.stop)
    return p


def get(p, path, headers=b"", timeout=10.0):
    """One request on a fresh connection: (status, head bytes, body, seconds)."""
    t = time.monotonic()
    with socket.create_connection(("127.0.0.1", p.port), timeout=timeout) as s:
        s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n" + headers + b"\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    return status, head, body, time.monotonic() - t


class RawMember:
    """A member scripted per connection: `script(sock, head)` runs after a request head is read;
    every head received is kept in `heads`."""

    def __init__(self, script):
        import threading
        self.script, self.heads = script, []
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.port = self.ls.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        import threading
        while True:
            try:
                s, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(s,), daemon=True).start()

    def _one(self, s):
        s.settimeout(5)
        buf = b""
        try:
            while b"\r\n\r\n" not in buf:
                d = s.recv(65536)
                if not d:
                    return
                buf += d
            head = buf.split(b"\r\n\r\n", 1)[0]
            self.heads.append(head)
            self.script(s, head)
        except OSError:
            pass
        finally:
            s.close()


def raw(p, data, timeout=5.0):
    """Send raw bytes on a fresh connection; everything answered until close or timeout."""
    with socket.create_connection(("127.0.0.1", p.port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                out += d
        except OSError:
            pass
    return out
