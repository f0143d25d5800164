"""r01: an upgrade whose client resets as the 101 arrives: the tunnel closes inside its constructor, before the
worker counted it open, and stays in the worker's tunnel set for ever (a stopping worker names them as 'stay here')."""
import os, signal, socket, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from h import *
from rawbackend import echo_after_101
b = RawBackend(echo_after_101, timeout=5)
with proxy([{"path": "/ws/", "to": b.ws_url + "/ws/"}], workers=1) as p:
    pid = p.worker_pids()[0]
    rss0 = rss_kib(pid)
    for i in range(2000):
        s = socket.create_connection(("127.0.0.1", p.port))
        s.sendall(upgrade_request("/ws/x%d" % i))
        time.sleep(0.0005 * (i % 7))
        reset(s)
    time.sleep(1)
    lines = p.access_lines()
    failed = sum('end="send failed' in l for l in lines)
    st = status(p)
    print(f"{len(lines)} upgrades reset by their client; {failed} tunnels ended 'send failed'; "
          f"status: connections {st['workers'][0]['connections']} tunnels {st['workers'][0]['tunnels']}; "
          f"RSS {rss0} -> {rss_kib(pid)} KiB")
    keep, _, _ = open_tunnel(p, '/ws/keep')   # one live tunnel: the stopping worker reports its hand-over
    os.kill(p.proc.pid, signal.SIGHUP)
    p.wait_ready(generation=2)
    time.sleep(2)
    print([l.split("] ", 3)[-1] for l in p.error_text().splitlines() if "hand-over" in l or "graceful stop" in l])
b.close()
