"""c03 (held): 100 tunnels whose client never reads: worker RSS grows ~120 KiB each; the other direction flows."""
import os, socket, sys, threading, time
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from h import *
N = 100
def behaviour(conn):
    head = conn.read_head()
    conn.send(switch_response("websocket", head.raw))
    def push():
        try:
            while True:
                conn.sock.sendall(b"z" * 65536)
        except OSError:
            pass
    threading.Thread(target=push, daemon=True).start()
    got = 0
    try:
        while (d := conn.sock.recv(65536)):
            got += len(d)
            conn.backend.results[head.target] = got
    except OSError:
        pass
b = RawBackend(behaviour, timeout=60)
for mode in ("1", "0"):
    with proxy([{"path": "/ws/", "to": b.ws_url + "/ws/"}], workers=1, environ={"MPM_SPLICE": mode}) as p:
        pid = p.worker_pids()[0]
        base = rss_kib(pid)
        socks = [open_tunnel(p, f"/ws/{i}", rcvbuf=4096)[0] for i in range(N)]
        time.sleep(2)
        for i, s in enumerate(socks):
            s.sendall(b"u" * 1000)
        time.sleep(1)
        up = sum(1 for i in range(N) if b.results.get(f"/ws/{i}", 0) >= 1000)
        print(f"MPM_SPLICE={mode}: RSS {base} -> {rss_kib(pid)} KiB for {N} tunnels whose client never reads; "
              f"upstream still flowing on {up}/{N}")
        for s in socks:
            reset(s)
        time.sleep(0.5)
b.close()
