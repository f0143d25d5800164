"""The C floor: what a TLS connection costs when C owns it from accept to close (bench/_floor_c.c).

bench/floor_tls.py measured what any Python proxy pays per TLS connection through CPython's
`ssl` and `socket` objects (bench/RESULTS-2026-12-05-first.md): about mpm-proxy's own cost.
Issue #20's remaining gap is that interpreter time, and the rewrite it points to keeps the
connection in C (accept, SSL object, handshake rounds, close) and asks Python only to route and
count.  This measures that design before it is built: the product's SSLContext
(conf.tlscontext, its cipher order and read-ahead), a connection that never becomes a Python
object, and Python called per request as the rewrite would call it:

- `--python none`: the callbacks do nothing but give the head back (the C's own floor);
- `--python product` (default): `request` runs what the lane's Python runs for a request
  today (worker.http1's parse, a route lookup, worker.rewrite's head for the backend) and
  `done` counts as worker.metrics does; `opened` counts the connection in a client table.

Not a product (bench/_floor_c.c says what it skips).  Built on first use with the system's cc
and libssl headers, into a temporary directory.

    python -m bench.floor_c --port P --backend-port B --cert CERT --key KEY [--python none|product]
"""

from __future__ import annotations

import argparse
import bisect
import importlib.util
import os
import socket
import subprocess
import sysconfig
import tempfile
import types

HERE = os.path.dirname(os.path.abspath(__file__))


def build() -> types.ModuleType:
    out = os.path.join(tempfile.mkdtemp(prefix="floor_c."), "_floor_c" + sysconfig.get_config_var("EXT_SUFFIX"))
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-I" + sysconfig.get_paths()["include"],
                    os.path.join(HERE, "_floor_c.c"), "-o", out, "-lssl", "-lcrypto"], check=True)
    spec = importlib.util.spec_from_file_location("_floor_c", out)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def context(cert: str, key: str):
    from conf import openssl
    from conf.tlscontext import listener_context
    tls = types.SimpleNamespace(cert=cert, key=key, client_ca=None, alpn=("http/1.1",), sni={})
    ctx = listener_context(tls)
    openssl.set_tls13_ciphersuites(ctx, openssl.TLS13_CIPHERSUITES)
    openssl.set_session_timeout(ctx, 300.0)
    return ctx, openssl.ssl_ctx(ctx)


def callbacks(kind: str, backend_port: int):
    if kind == "none":
        return (lambda raw: raw.replace(b"Connection: close\r\n", b"")), (lambda status, sent, resumed: None), None
    from conf.model import Limits
    from worker.http1 import parse_request
    from worker.rewrite import request_head
    limits = Limits()
    routes = {b"/small": (b"Host: 127.0.0.1:%d\r\n" % backend_port, b"/small")}
    counts = [0] * 64
    bounds = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
    clients: dict = {}
    xff, proto = b"X-Forwarded-For: 127.0.0.1\r\n", b"X-Forwarded-Proto: https\r\n"

    def request(raw: bytes) -> bytes:
        head = parse_request(raw, limits)
        host_line, mapped = routes.get(head.target) or routes[b"/small"]
        return request_head(head, mapped, host_line, xff, proto, None)

    def done(status: int, sent: int, resumed: int) -> None:
        counts[(status // 100) * 11 + bisect.bisect_left(bounds, 0.001)] += 1
        counts[60] += sent
        counts[61 + (1 if resumed else 0)] += 1

    def opened(ip: bytes) -> None:
        clients[ip] = clients.get(ip, 0) + 1

    return request, done, opened


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend-port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--python", choices=("none", "product"), default="product")
    args = parser.parse_args()
    module = build()
    ctx, pointer = context(args.cert, args.key)
    listener = socket.create_server(("127.0.0.1", args.port), backlog=1024)
    listener.setblocking(False)
    request, done, opened = callbacks(args.python, args.backend_port)
    module.serve(listener.fileno(), pointer, args.backend_port, request, done, opened)


if __name__ == "__main__":
    main()
