"""c03 (held): garbage, a 1 MB line, deeply nested JSON, non-object JSON, odd field types on the
control socket each get one JSON error line, and the master answers status at once after."""
import json, os, socket, sys, time
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from h import proxy

p = proxy(workers=1)
path = os.path.join(p.dir, "run", "mpm.sock")


def raw(data):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.settimeout(5)
    try:
        s.sendall(data)
    except OSError as exc:
        return f"send: {exc}"
    out = b""
    try:
        while not out.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except OSError as exc:
        return f"recv: {exc}"
    s.close()
    return out.decode(errors="replace").strip()[:100]


for name, data in (("garbage", b"\x00\xff garbage\n"), ("1 MB line", b"x" * (1 << 20) + b"\n"),
                   ("deep JSON", b"[" * 100000 + b"\n"), ("a list", b"[1,2]\n"), ("cmd is a dict", b'{"cmd": {}}\n'),
                   ("balancer set with numbers", b'{"cmd": "balancer", "set": [1, 2, 3, 4]}\n'),
                   ("huge integer", b'{"cmd": ' + b"9" * 5000 + b"}\n")):
    t = time.monotonic()
    print(f"{name}: {raw(data)} ({1000 * (time.monotonic() - t):.0f} ms)")
t = time.monotonic()
r = p.mpmctl("status")
print(f"status afterwards: rc={r.returncode}; master alive: {p.proc.poll() is None}")
p.stop()
