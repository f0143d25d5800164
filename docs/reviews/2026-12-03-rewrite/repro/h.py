"""Shared harness for the repros: a scripted raw backend and a real mpm proxy (tests/proxyproc)."""
import os, sys, socket, threading, time, tempfile, atexit
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))   # the repository (was the reviewer's clone)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)
from proxyproc import Proxy  # noqa


class Backend:
    """Each accepted connection runs script(sock, rec) in a thread; rec is a bytearray of
    everything received (by helper recv functions)."""

    def __init__(self, script, host="127.0.0.1"):
        self.script = script
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind((host, 0))
        self.ls.listen(64)
        self.port = self.ls.getsockname()[1]
        self.conns = []
        self.closed = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self.closed:
            try:
                s, _ = self.ls.accept()
            except OSError:
                return
            rec = bytearray()
            self.conns.append(rec)
            threading.Thread(target=self._one, args=(s, rec), daemon=True).start()

    def _one(self, s, rec):
        s.settimeout(5)
        try:
            self.script(s, rec)
        except Exception as e:
            rec += b"<<script error %r>>" % repr(e).encode()
        finally:
            try:
                s.close()
            except OSError:
                pass

    def close(self):
        self.closed = True
        self.ls.close()


def recv_head(s, rec, buf=None):
    """Read until CRLFCRLF; returns (head, rest)."""
    buf = bytearray() if buf is None else buf
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            raise ConnectionError("eof in head")
        rec += d
        buf += d
    i = buf.index(b"\r\n\r\n") + 4
    return bytes(buf[:i]), bytearray(buf[i:])


def recv_for(s, rec, seconds):
    """Everything received in `seconds` (or until EOF)."""
    end = time.time() + seconds
    out = bytearray()
    while time.time() < end:
        s.settimeout(max(end - time.time(), 0.01))
        try:
            d = s.recv(65536)
        except (TimeoutError, socket.timeout):
            break
        except OSError:
            break
        if not d:
            out += b"<EOF>"
            break
        rec += d
        out += d
    return bytes(out)


def start_proxy(routes, workers=1, **sections):
    d = tempfile.mkdtemp(prefix="mpmrepro-")
    p = Proxy(d, routes, workers=workers, **sections)
    p.start()
    atexit.register(p.stop)
    return p


def client_exchange(port, data, seconds=2.0, host="127.0.0.1", source=None, chunks=None, pause=0.0):
    """Send data (or each of `chunks` with `pause` between), return what arrives in `seconds`
    or until EOF (with <EOF> appended)."""
    s = socket.create_connection((host, port), timeout=5, source_address=(source, 0) if source else None)
    try:
        if chunks is None:
            chunks = [data]
        for c in chunks:
            s.sendall(c)
            if pause:
                time.sleep(pause)
        out = bytearray()
        end = time.time() + seconds
        while time.time() < end:
            s.settimeout(max(end - time.time(), 0.01))
            try:
                d = s.recv(65536)
            except (TimeoutError, socket.timeout):
                break
            except ConnectionResetError:
                out += b"<RST>"
                break
            if not d:
                out += b"<EOF>"
                break
            out += d
        return bytes(out)
    finally:
        s.close()
