"""r04: the relay is made at a worker's first plain tunnel (native._relay_of: Relay() ->
epoll_create1).  Out of descriptors at that moment, hand_to_relay raises *after* both endpoints
left the loop's epoll (native.py:29-31), from inside Tunnel.__init__ (tunnel.py:231-233) and so
before worker.tunnel_opened (worker/upgrade.py:36-38).  The tunnel is already in loop.timed: the
client got its 101 and nothing more is relayed until the idle deadline closes it, and that close
calls on_close -> tunnel_closed for a tunnel that was never counted open (tunnels -1).
With MPM_NATIVE_RELAY=0 the same shortage costs nothing (Python relays with the fds it has).
Starts its own master (tests/proxyproc.Proxy, 1 worker) and raw backend; stops both."""
import os, socket, subprocess, sys, tempfile, time
COPY = os.environ.get("REV_COPY", "/tmp/rev-relay")
if not os.path.exists(COPY):
    os.makedirs(COPY)
    subprocess.run(f"cd /work/main && git archive HEAD | tar -x -C {COPY} && cp conf/*.so {COPY}/conf/ && cp tunnel/*.so {COPY}/tunnel/", shell=True, check=True)
sys.path[:0] = [COPY, COPY + "/tests"]
import psutil
from proxyproc import Proxy
from rawbackend import RawBackend
from wsutil import switch_response, upgrade_request

def echo(conn):
    head = conn.read_head()
    conn.send(switch_response("websocket", head.raw))
    while True:
        data = conn.sock.recv(4096)
        if not data:
            return
        conn.sock.sendall(data)

def run(native: str) -> None:
    backend = RawBackend(echo)
    proxy = Proxy(tempfile.mkdtemp(prefix="r04-"), [{"path": "/", "to": backend.url + "/", "timeout": 3}],
                  workers=1, environ={"MPM_NATIVE_RELAY": native})
    proxy.start()
    try:
        worker = proxy.worker_pids()[0]
        soft, hard = psutil.Process(worker).rlimit(psutil.RLIMIT_NOFILE)
        held = len(os.listdir(f"/proc/{worker}/fd"))
        # Two descriptors left: the client's connection and its backend connection; none for the relay.
        subprocess.run(["prlimit", f"--pid={worker}", f"--nofile={held + 2}:{hard}"], check=True, timeout=5)
        try:
            c = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
            c.sendall(upgrade_request("/ws"))
            head = c.recv(4096)
            time.sleep(0.3)
        finally:
            subprocess.run(["prlimit", f"--pid={worker}", f"--nofile={soft}:{hard}"], check=True, timeout=5)
        mid = [x["tunnels"] for x in proxy.status()["workers"] if x["pid"] == worker]
        c.sendall(b"ping")
        try:
            echo_ = c.recv(100)
        except socket.timeout:
            echo_ = "(nothing in 2 s)"
        t0 = time.monotonic()
        c.settimeout(10)
        try:
            while c.recv(100):
                pass
            ended = f"closed by the proxy {time.monotonic() - t0:.1f} s later"
        except OSError as exc:
            ended = f"{exc}"
        status = proxy.status()
        w = [x for x in status["workers"] if x["pid"] == worker][0]
        print(f"MPM_NATIVE_RELAY={native}: head {head.splitlines()[0] if head else head!r}; echo of 'ping': {echo_!r}; {ended}; "
              f"scoreboard tunnels while open: {mid}, after: {w['tunnels']}")
        err = [l for l in proxy.error_text().splitlines() if "internal" in l or "Error" in l]
        print("   error log:", err[-4:])
        c.close()
    finally:
        proxy.stop()
        backend.close()

for native in ("1", "0"):
    run(native)
