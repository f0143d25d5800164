"""A long run of mpm-proxy under light mixed traffic, with reloads and one `mpmctl upgrade`,
sampling every process's fds / RSS / threads, the scoreboard, /metrics and the sockets.

  cd /tmp/fix-soak && /work/main/.venv/bin/python docs/reviews/2026-12-03-soak/soak.py --minutes 5 OUTDIR

Traffic (each kind a thread, paced to a few hundred requests a second in all): keep-alive
HTTP/1.1 GETs of 100 B / 64 KiB and POSTs of 0-200 KiB; WebSockets through the bench backend
opened, used and ended three ways (close frame, RST, left idle past timeouts.proxy); h2c
connections of 6 streams; downloads of 2 MiB aborted after 10 KiB (FIN or RST); a backend
that closes early (/early) or without answering (/cut).  A reload every `--reload` seconds,
an `mpmctl upgrade` half-way.  At the end: quiet for 12 s, then a final sample, the counts the
clients saw against the access log, and the proxy stopped by pid (tests/proxyproc)."""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import psutil  # noqa: E402
from backends import BenchBackend  # noqa: E402
from h2client import H2Client  # noqa: E402
from proxyproc import Proxy  # noqa: E402
from rawsock import read_head, recv_exact  # noqa: E402
from support import free_port, wait_for  # noqa: E402
from wsutil import OP_CLOSE, close_frame, frame, read_frame, upgrade_request  # noqa: E402

STOP = threading.Event()
SENT: dict[str, int] = {}
LOCK = threading.Lock()


ERRORS: list[str] = []


def count(kind: str, n: int = 1) -> None:
    with LOCK:
        SENT[kind] = SENT.get(kind, 0) + n


def failed(kind: str, e: BaseException) -> None:
    count(f"{kind}_err_{type(e).__name__}")
    if len(ERRORS) < 50:
        ERRORS.append(f"{time.strftime('%H:%M:%S')} {kind}: {type(e).__name__}: {e}")


def response(sock, buf) -> tuple[int, bytes]:
    head, buf2 = read_head(sock, buf)
    status = int(head.split(b" ")[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    body = recv_exact(sock, length, buf2) if length else b""
    buf[:] = buf2
    return status, b"connection: close" in head.lower()


TLS: dict = {}     # port -> client ssl context, for the TLS listener


def connect(port: int, timeout: float) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if port in TLS:
        sock = TLS[port][0].wrap_socket(sock, server_hostname="localhost")
    return sock


def keepalive_http(port: int, pause: float) -> None:
    while not STOP.is_set():
        try:
            sock = connect(port, 10)
            buf = bytearray()
            for _ in range(random.randint(1, 60)):
                if STOP.is_set():
                    break
                pick = random.random()
                prefix = random.choice([b"/app/", b"/lb/"])
                if pick < 0.5:
                    sock.sendall(b"GET " + prefix + b"small HTTP/1.1\r\nHost: soak\r\n\r\n")
                elif pick < 0.7:
                    sock.sendall(b"GET " + prefix + b"64k HTTP/1.1\r\nHost: soak\r\n\r\n")
                else:
                    body = os.urandom(random.choice([0, 10, 3000, 70000, 200000]))
                    sock.sendall(b"POST " + prefix + b"echo HTTP/1.1\r\nHost: soak\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                count("http")
                status, closing = response(sock, buf)
                count(f"http_{status}")
                if closing:           # (a stopping worker's TLS connection: a new one, as any client does)
                    break
                time.sleep(pause)
            sock.close()
        except OSError as e:
            failed("http", e)
            time.sleep(0.2)


def websocket(port: int) -> None:
    while not STOP.is_set():
        how = random.choice(["close", "close", "reset", "idle"])
        try:
            sock = connect(port, 15)
            sock.sendall(upgrade_request("/ws/"))
            count("ws")
            head, buf = read_head(sock, bytearray())
            if b" 101 " not in head.split(b"\r\n")[0]:
                count("ws_not101")
                sock.close()
                continue
            for size in (10, 1000, 70000):
                sock.sendall(frame(os.urandom(size)))
                read_frame(sock, buf)
            if how == "close":
                sock.sendall(close_frame(1000))
                while read_frame(sock, buf)[0] != OP_CLOSE:
                    pass
            elif how == "reset":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:   # idle: the proxy's timeouts.proxy ends it
                sock.settimeout(20)
                t0 = time.monotonic()
                data = sock.recv(100)
                count("ws_idle_closed" if not data else "ws_idle_data")
                count("ws_idle_secs", int(time.monotonic() - t0))
            sock.close()
            count(f"ws_{how}")
        except (OSError, struct.error) as e:
            failed("ws", e)
        time.sleep(0.3)


def http2(port: int) -> None:
    while not STOP.is_set():
        try:
            client = H2Client(port, timeout=10, tls=TLS[port][1] if port in TLS else None)
            for _ in range(random.randint(1, 5)):
                if client.goaway is not None:      # a reload: a real client opens a new connection
                    count("h2_goaway_seen")
                    break
                ids = [client.request("GET", random.choice(["/app/small", "/app/64k"]), scheme="http")
                       for _ in range(6)]
                for sid in ids:
                    stream = client.response(sid)
                    count(f"h2_{stream.status}")
                count("h2", 6)
                time.sleep(0.2)
            if random.random() < 0.3:     # a download given up: the socket closes mid-stream
                client.request("GET", "/lb/big", scheme="http")
                client.pump(0.05)
                count("h2_abort")
            client.close()
        except Exception as e:  # noqa: BLE001
            goaway = getattr(locals().get("client"), "goaway", None)
            failed("h2", e if goaway is None else RuntimeError(f"{e} (after GOAWAY last_stream_id "
                                                                f"{goaway.last_stream_id})"))
            time.sleep(0.3)


def aborts(port: int) -> None:
    while not STOP.is_set():
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            path = random.choice([b"/app/big", b"/lb/big", b"/app/early", b"/lb/early", b"/app/cut", b"/lb/cut"])
            sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: soak\r\n\r\n")
            count("abort_" + path.decode().replace("/", "_"))
            got = 0
            while got < 10000:
                data = sock.recv(4096)
                if not data:
                    break
                got += len(data)
            if random.random() < 0.5:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        except OSError as e:
            failed("abort", e)
        time.sleep(0.15)


def uploads_and_h2_edges(port: int) -> None:
    """Uploads given up half-way; HTTP/2 streams reset by the client; RFC 8441 WebSockets."""
    while not STOP.is_set():
        pick = random.random()
        try:
            if pick < 0.4:
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                sock.sendall(b"POST /lb/echo HTTP/1.1\r\nHost: soak\r\nContent-Length: 500000\r\n\r\n")
                sock.sendall(os.urandom(random.choice([0, 1000, 100000])))
                count("upload_abort")
                time.sleep(random.choice([0, 0.05]))
                if random.random() < 0.5:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            elif pick < 0.7:
                client = H2Client(port, timeout=10)
                ids = [client.request("GET", "/lb/big", scheme="http") for _ in range(3)]
                client.pump(0.05)
                for sid in ids:
                    client.conn.reset_stream(sid)
                client.flush()
                count("h2_reset", 3)
                stream = client.get("/app/small", scheme="http")
                count(f"h2_{stream.status}")
                count("h2")
                client.close()
            else:
                client = H2Client(port, timeout=10)
                stream = client.websocket("/ws/")
                count("h2ws")
                count(f"h2ws_{stream.status}")
                if stream.status == 200:
                    for size in (10, 5000):
                        client.ws_send(stream.id, os.urandom(size))
                        client.ws_recv(stream.id)
                    if random.random() < 0.5:
                        client.conn.reset_stream(stream.id)
                        client.flush()
                client.close()
        except Exception as e:  # noqa: BLE001
            failed("edge", e)
        time.sleep(0.2)


def tls_half_open(port: int) -> None:
    """Clients that connect to the TLS listener and go away before or during the handshake."""
    while not STOP.is_set():
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            pick = random.random()
            if pick < 0.3:
                sock.sendall(os.urandom(200))          # not TLS at all
            elif pick < 0.6:                               # a ClientHello, then gone
                incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
                machine = TLS[port][0].wrap_bio(incoming, outgoing, server_hostname="localhost")
                try:
                    machine.do_handshake()
                except ssl.SSLWantReadError:
                    pass
                sock.sendall(outgoing.read())
                time.sleep(0.05)
            if random.random() < 0.5:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
            count("tls_half_open")
        except OSError as e:
            failed("tls_half_open", e)
        time.sleep(0.2)


# -- sampling ---------------------------------------------------------------------------------
def fd_kinds(pid: int) -> dict:
    kinds: dict[str, int] = {}
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{name}")
            except OSError:
                continue
            kind = target.split(":")[0] if ":" in target else ("memfd" if "memfd" in target else "file")
            kinds[kind] = kinds.get(kind, 0) + 1
    except OSError:
        pass
    return kinds


def proc_info(pid: int) -> dict:
    try:
        p = psutil.Process(pid)
        return {"pid": pid, "rss_kb": p.memory_info().rss // 1024, "threads": p.num_threads(),
                "status": p.status(), "fds": fd_kinds(pid)}
    except psutil.NoSuchProcess:
        return {"pid": pid, "gone": True}


def socket_states(port: int) -> dict:
    out = subprocess.run(["ss", "-tanH"], capture_output=True, text=True).stdout
    states: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 5 and (parts[3].endswith(f":{port}") or parts[4].endswith(f":{port}")):
            states[parts[0]] = states.get(parts[0], 0) + 1
    return states


def metrics(admin_port: int) -> dict:
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5).read().decode()
    keep = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name = line.split("{")[0].split(" ")[0]
        if name in ("mpm_worker_connections", "mpm_worker_tunnels", "mpm_worker_http2_connections",
                    "mpm_worker_http2_streams", "mpm_balancer_member_busy"):
            keep[name] = keep.get(name, 0) + float(line.rsplit(" ", 1)[1])
        elif name.startswith(("mpm_tunnels_opened_total", "mpm_tunnels_closed_total", "mpm_requests_total")):
            keep[name] = keep.get(name, 0) + float(line.rsplit(" ", 1)[1])
    return keep


def sample(proxy: Proxy, admin_port: int, backend_ports: list[int]) -> dict:
    status = proxy.status() or {}
    master = status.get("master_pid")
    row = {"t": time.time(), "generation": status.get("generation"),
           "workers": [{k: w.get(k) for k in ("pid", "generation", "state", "connections", "tunnels",
                                              "requests", "busy", "h2_connections", "h2_streams")}
                       for w in status.get("workers", [])],
           "clients": status.get("clients"),
           "procs": [proc_info(pid) for pid in [master] + [w["pid"] for w in status.get("workers", [])] if pid],
           "sockets_proxy": socket_states(proxy.port),
           "sockets_tls": {p: socket_states(p) for p in TLS},
           "sockets_backends": {p: socket_states(p) for p in backend_ports}}
    if master:
        try:
            children = psutil.Process(master).children(recursive=True)
            row["zombies"] = [c.pid for c in children if c.status() == psutil.STATUS_ZOMBIE]
            row["children"] = len(children)
        except psutil.NoSuchProcess:
            pass
    try:
        row["metrics"] = metrics(admin_port)
    except OSError as e:
        row["metrics"] = {"error": str(e)}
    result = proxy.mpmctl("balancer", "--json")
    if result.returncode == 0:
        row["balancer"] = json.loads(result.stdout)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--minutes", type=float, default=5)
    ap.add_argument("--reload", type=float, default=60)
    ap.add_argument("--http-threads", type=int, default=3)
    ap.add_argument("--pause", type=float, default=0.02)
    ap.add_argument("--tls", action="store_true", help="a second listener with TLS (h2 by ALPN) and traffic on it")
    ap.add_argument("--objects", action="store_true", help="workers count their live objects (inject/)")
    ap.add_argument("--limits", action="store_true", help="limits.per_client on (the shared client table)")
    args = ap.parse_args()
    os.makedirs(args.outdir, exist_ok=True)
    bench = BenchBackend(args.outdir)
    back = subprocess.Popen([sys.executable, os.path.join(HERE, "soak_backend.py")], stdout=subprocess.PIPE, text=True)
    back_port = int(back.stdout.readline().split()[-1])
    back2 = subprocess.Popen([sys.executable, os.path.join(HERE, "soak_backend.py")], stdout=subprocess.PIPE, text=True)
    back2_port = int(back2.stdout.readline().split()[-1])
    admin_port = free_port()
    environ = None
    if args.objects:
        environ = {"PYTHONPATH": os.path.join(HERE, "inject"), "SOAK_OBJECTS": os.path.join(args.outdir, "objects.jsonl")}
    proxy = Proxy(os.path.join(args.outdir, "proxy"), [
        {"path": "/ws/", "to": f"ws://127.0.0.1:{bench.port}/ws"},
        {"path": "/app/", "to": f"http://127.0.0.1:{back_port}/"},
        {"path": "/lb/", "to": "balancer://pair/"},
    ], balancers={"pair": {"method": "bybusyness", "members": [
        {"url": f"http://127.0.0.1:{back_port}", "route": "a"}, {"url": f"http://127.0.0.1:{back2_port}", "route": "b"}]}},
        admin={"listen": f"127.0.0.1:{admin_port}"},
        timeouts={"connect": 2, "proxy": 4, "client_header": 5, "keepalive": 5}, environ=environ)
    if args.limits:
        proxy.config["limits"] = {"per_client": {"connections": 500, "tunnels": 200}}
    proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"}]
    tls_port = None
    if args.tls:
        import trustme
        from support import cert_files
        ca = trustme.CA()
        cert, key = cert_files(ca, args.outdir, "localhost")
        tls_port = free_port()
        proxy.config["listen"].append({"address": f"127.0.0.1:{tls_port}", "tls": {"cert": cert, "key": key}})
        contexts = ssl.create_default_context(), ssl.create_default_context()    # http/1.1, h2 (ALPN)
        for context in contexts:
            ca.configure_trust(context)
        TLS[tls_port] = contexts
    samples = open(os.path.join(args.outdir, "samples.jsonl"), "w")
    threads = []
    try:
        proxy.start()
        samples.write(json.dumps({"baseline": sample(proxy, admin_port, [back_port, back2_port, bench.port])}) + "\n")
        for _ in range(args.http_threads):
            threads.append(threading.Thread(target=keepalive_http, args=(proxy.port, args.pause), daemon=True))
        for target in (websocket, websocket, http2, aborts, uploads_and_h2_edges):
            threads.append(threading.Thread(target=target, args=(proxy.port,), daemon=True))
        if tls_port:
            for target in (keepalive_http, websocket, http2, tls_half_open):
                extra = (args.pause,) if target is keepalive_http else ()
                threads.append(threading.Thread(target=target, args=(tls_port, *extra), daemon=True))
        for t in threads:
            t.start()
        start = time.monotonic()
        end = start + args.minutes * 60
        next_reload = start + args.reload
        upgraded = False
        events = []
        while time.monotonic() < end:
            time.sleep(5)
            row = sample(proxy, admin_port, [back_port, back2_port, bench.port])
            row["sent"] = dict(SENT)
            samples.write(json.dumps(row) + "\n")
            samples.flush()
            now = time.monotonic()
            if now >= next_reload:
                next_reload = now + args.reload
                if not upgraded and now - start > args.minutes * 30:
                    r = proxy.mpmctl("upgrade", timeout=60)
                    upgraded = True
                    events.append(("upgrade", now - start, r.returncode, r.stdout[-300:], r.stderr[-300:]))
                    try:
                        proxy.proc.wait(30)   # the old master exits after the hand-over
                    except subprocess.TimeoutExpired:
                        pass
                    st = proxy.status() or {}
                    if st.get("master_pid"):
                        proxy.seen_pids.add(st["master_pid"])
                else:
                    r = proxy.reload()
                    events.append(("reload", now - start, r.returncode, r.stdout[-200:], r.stderr[-200:]))
        STOP.set()
        for t in threads:
            t.join(25)
        time.sleep(12)
        final = sample(proxy, admin_port, [back_port, back2_port, bench.port])
        final["sent"] = dict(SENT)
        samples.write(json.dumps({"final": final}) + "\n")
        lines = proxy.access_lines()
        summary = {"sent": dict(SENT), "events": events, "access_lines": len(lines),
                   "access_ws": sum(1 for x in lines if "/ws/" in x),
                   "access_http": sum(1 for x in lines if ("/app/" in x or "/lb/" in x) and "HTTP/2" not in x),
                   "access_h2": sum(1 for x in lines if "HTTP/2" in x),
                   "access_not_2xx": sum(1 for x in lines if '" 2' not in x and '" 101 ' not in x),
                   "alive_threads": [t.name for t in threads if t.is_alive()], "errors": ERRORS}
        with open(os.path.join(args.outdir, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
        print(json.dumps(summary, indent=1))
        print(json.dumps(final, indent=1))
    finally:
        STOP.set()
        samples.close()
        master = (proxy.status() or {}).get("master_pid") if proxy.proc else None
        if master and proxy.proc and master != proxy.proc.pid:
            os.kill(master, 15)     # after an upgrade the new master is not our child
            wait_for(lambda: not psutil.pid_exists(master) or psutil.Process(master).status() == psutil.STATUS_ZOMBIE, 20, 0.1, "new master exit")
        try:
            proxy.stop()
        except AssertionError as e:
            print("STOP:", e)
        for b in (back, back2):
            b.kill()
            b.wait()
        bench.close()


if __name__ == "__main__":
    main()
