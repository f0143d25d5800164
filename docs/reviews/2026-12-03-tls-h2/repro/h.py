"""Shared harness for the repros (after docs/reviews/2026-12-03-http1/repro/h.py): scripted raw
backends, TLS material (trustme), raw HTTP/2 frames, and a real mpm proxy (tests/proxyproc)
whose listeners each repro sets.  Everything started is stopped at exit (Proxy.stop checks that
no master or worker outlived it; backends are threads of this process)."""
import os, sys, socket, ssl, struct, threading, time, tempfile, atexit
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))   # the repository (the reviewer's clone)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)
os.chdir(ROOT)
from proxyproc import Proxy  # noqa
import worker  # noqa
assert worker.__file__.startswith(ROOT), worker.__file__

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def frames_in(data):
    """[(type, flags, stream, payload)] of a byte string of whole frames (a cut last one is dropped)."""
    out, i = [], 0
    while i + 9 <= len(data):
        n = int.from_bytes(data[i:i + 3], "big")
        if i + 9 + n > len(data):
            break
        out.append((data[i + 3], data[i + 4], int.from_bytes(data[i + 5:i + 9], "big") & 0x7FFFFFFF,
                    data[i + 9:i + 9 + n]))
        i += 9 + n
    return out


class Backend:
    """Each accepted connection runs script(sock, rec) in a thread; rec: bytes received."""

    def __init__(self, script, host="127.0.0.1", family=socket.AF_INET, tls_context=None):
        self.script = script
        self.tls_context = tls_context
        self.ls = socket.socket(family)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind((host, 0))
        self.ls.listen(256)
        self.port = self.ls.getsockname()[1]
        self.conns = []
        self.errors = []
        self.closed = False
        threading.Thread(target=self._run, daemon=True).start()
        atexit.register(self.close)

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
            if self.tls_context is not None:
                s = self.tls_context.wrap_socket(s, server_side=True)
            self.script(s, rec)
        except Exception as e:
            self.errors.append(repr(e))
            rec += b"<<script error %r>>" % repr(e).encode()
        finally:
            try:
                s.close()
            except OSError:
                pass

    def close(self):
        self.closed = True
        try:
            self.ls.close()
        except OSError:
            pass


def recv_head(s, rec, buf=None):
    buf = bytearray() if buf is None else buf
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            raise ConnectionError("eof in head")
        rec += d
        buf += d
    i = buf.index(b"\r\n\r\n") + 4
    return bytes(buf[:i]), bytearray(buf[i:])


def ok_script(s, rec):
    """Answers every request head on the connection with a small 200 (keep-alive)."""
    buf = bytearray()
    while True:
        try:
            head, buf = recv_head(s, rec, buf)
        except (ConnectionError, OSError):
            return
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


def start_proxy(routes, listen=None, workers=1, **sections):
    """`listen(port)` -> the `listen:` list (default: plain 127.0.0.1:port)."""
    d = tempfile.mkdtemp(prefix="mpmrepro-")
    p = Proxy(d, routes, workers=workers, **sections)
    if listen is not None:
        p.config["listen"] = listen(p.port)
    p.start()
    atexit.register(p.stop)
    return p


_CA = None


def ca():
    global _CA
    if _CA is None:
        import trustme
        _CA = trustme.CA()
    return _CA


def cert_files(*names, directory=None):
    """(cert path, key path) for `names`, issued by the harness CA."""
    directory = directory or tempfile.mkdtemp(prefix="mpmrepro-tls-")
    c = ca().issue_cert(*names)
    base = os.path.join(directory, names[0].replace(":", "_").replace("*", "star"))
    c.private_key_pem.write_to_path(base + ".key")
    with open(base + ".pem", "wb") as f:
        for pem in c.cert_chain_pems:
            f.write(pem.bytes())
    return base + ".pem", base + ".key"


def client_context(alpn=None):
    ctx = ssl.create_default_context()
    ca().configure_trust(ctx)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def server_context(*names):
    cert, key = cert_files(*names)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def read_all(s, seconds, limit=None):
    """What arrives within `seconds` or until EOF (b'<EOF>' / b'<RST>' appended)."""
    end = time.time() + seconds
    out = bytearray()
    while time.time() < end and (limit is None or len(out) < limit):
        s.settimeout(max(end - time.time(), 0.01))
        try:
            d = s.recv(65536)
        except (TimeoutError, socket.timeout):
            break
        except ConnectionResetError:
            out += b"<RST>"
            break
        except ssl.SSLError as e:
            out += b"<SSLError %s>" % str(e).encode()
            break
        if not d:
            out += b"<EOF>"
            break
        out += d
    return bytes(out)


class Victim:
    """A keep-alive HTTP/1.1 client that sends GET / every `interval` s and records latencies."""

    def __init__(self, port, interval=0.02, host="127.0.0.1"):
        self.port, self.interval, self.host = port, interval, host
        self.lat = []
        self.stop_flag = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        s = socket.create_connection((self.host, self.port), timeout=10)
        while not self.stop_flag:
            t0 = time.perf_counter()
            s.sendall(b"GET /v HTTP/1.1\r\nHost: v\r\n\r\n")
            buf = b""
            while not buf.endswith(b"ok"):
                d = s.recv(65536)
                if not d:
                    return
                buf += d
            self.lat.append((time.time(), time.perf_counter() - t0))
            time.sleep(self.interval)
        s.close()

    def stop(self):
        self.stop_flag = True
        self.t.join(5)

    def worst(self, since=0.0):
        xs = [l for t, l in self.lat if t >= since]
        return (max(xs) * 1000 if xs else float("nan")), len(xs)
