"""r02b (proxy level, r02's cause): a WebSocket tunnel idle for 2 s of its route's 3 s timeout,
then `mpmctl reload` (the old generation hands its plain tunnels to the new one): when does the
proxy close it for idleness?  MPM_NATIVE_RELAY=1 and =0, one worker, a raw echo backend."""
import os, socket, subprocess, sys, tempfile, time
COPY = os.environ.get("REV_COPY", "/tmp/rev-relay")
if not os.path.exists(COPY):
    os.makedirs(COPY)
    subprocess.run(f"cd /work/main && git archive HEAD | tar -x -C {COPY} && cp conf/*.so {COPY}/conf/ && cp tunnel/*.so {COPY}/tunnel/", shell=True, check=True)
sys.path[:0] = [COPY, COPY + "/tests"]
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

for native in ("1", "0"):
    backend = RawBackend(echo)
    proxy = Proxy(tempfile.mkdtemp(prefix="r02b-"), [{"path": "/", "to": backend.url + "/", "timeout": 3}],
                  workers=1, environ={"MPM_NATIVE_RELAY": native})
    proxy.start()
    try:
        c = socket.create_connection(("127.0.0.1", proxy.port), timeout=15)
        c.sendall(upgrade_request("/ws"))
        c.recv(4096)
        c.sendall(b"ping"); assert c.recv(10) == b"ping"
        t0 = time.monotonic()          # last traffic
        time.sleep(2.0)
        r = proxy.reload()
        t_reload = time.monotonic() - t0
        try:
            while c.recv(100):
                pass
            how = "closed"
        except OSError as exc:
            how = str(exc)
        print(f"MPM_NATIVE_RELAY={native}: reload at {t_reload:.1f} s idle (rc {r.returncode}); {how} "
              f"{time.monotonic() - t0:.1f} s after the last traffic (route timeout 3 s)")
        c.close()
    finally:
        proxy.stop()
        backend.close()
