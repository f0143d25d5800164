"""Shared harness for the control-area repros: a real mpm master (tests/proxyproc.Proxy) in a
temporary directory, a tiny HTTP backend thread, and helpers.  Everything started is stopped
at exit (Proxy.stop checks that no master or worker outlived it)."""
import atexit, os, socket, sys, tempfile, threading, time
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)
os.chdir(ROOT)
from proxyproc import Proxy  # noqa: E402
import worker  # noqa: E402
assert worker.__file__.startswith(ROOT), worker.__file__


class Backend:
    """Answers every request `200 ok`, keep-alive."""

    def __init__(self):
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.url = f"http://127.0.0.1:{self.ls.getsockname()[1]}"
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                s, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(s,), daemon=True).start()

    def _one(self, s):
        buf = b""
        with s:
            while True:
                try:
                    data = s.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buf += data
                while b"\r\n\r\n" in buf:
                    _, buf = buf.split(b"\r\n\r\n", 1)
                    s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


def proxy(workers=1, routes=None, **sections):
    backend = Backend()
    p = Proxy(tempfile.mkdtemp(prefix="ctl-repro-"), routes or [{"path": "/", "to": backend.url + "/"}],
              workers=workers, **sections)
    atexit.register(p.stop)     # before start: a start that fails must not leave a master behind
    p.start()
    return p


def get(p, path="/", timeout=3.0):
    """The status line of one GET, or the exception's name."""
    try:
        with p.connect(timeout) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            return s.recv(4096).split(b"\r\n", 1)[0].decode()
    except OSError as exc:
        return type(exc).__name__


def write_raw(p, text):
    """Replace the config file with `text` (hostile YAML the dict-based writer cannot express)."""
    with open(p.config_path, "w", encoding="utf-8", errors="surrogatepass") as f:
        f.write(text)


def base_yaml(p):
    """The running config as YAML text, to append a hostile section to."""
    import yaml
    return yaml.safe_dump(p.config, sort_keys=False)
