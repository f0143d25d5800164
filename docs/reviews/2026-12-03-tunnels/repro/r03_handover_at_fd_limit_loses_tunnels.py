"""r03: a hand-over to a successor that runs out of file descriptors cuts live tunnels.

The master (and so its workers) runs under RLIMIT_NOFILE=200; two workers hold 60 echo tunnels
each (120 fds apiece); a reload to one worker makes one successor take all 120 tunnels (240 fds).
Expected: what it cannot take stays with the old worker (as a TLS tunnel does), nothing is cut.
Usage: r03_handover_at_fd_limit_loses_tunnels.py [LIMIT [TUNNELS_PER_WORKER]]"""
import os, resource, signal, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from h import ROOT, Proxy, RawBackend, open_tunnel, status, status_of
from rawbackend import echo_after_101

LIMIT = int(sys.argv[1]) if len(sys.argv) > 1 else 200
N = int(sys.argv[2]) if len(sys.argv) > 2 else 60
b = RawBackend(echo_after_101, timeout=60)
with tempfile.TemporaryDirectory(prefix="tunnels-review-") as d:
    p = Proxy(d, [{"path": "/ws/", "to": b.ws_url + "/ws/"}], workers=2)
    p.write_config()
    p.stdout, p.stderr = open(d + "/stdout.log", "wb"), open(d + "/stderr.log", "wb")
    p.proc = subprocess.Popen([sys.executable, "-m", "mpm", "start", "-c", p.config_path], stdout=p.stdout,
                              stderr=p.stderr, cwd=ROOT,
                              preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT)))
    p.seen_pids.add(p.proc.pid)
    try:
        p.wait_ready()
        socks = []
        for i in range(2 * N):
            s, head, _ = open_tunnel(p, f"/ws/{i}")
            assert status_of(head) == 101, head
            socks.append(s)
        p.config["mpm"]["workers"] = 1          # one successor takes every tunnel
        p.write_config()
        os.kill(p.proc.pid, signal.SIGHUP)
        p.wait_ready(generation=2)
        time.sleep(3)
        alive = 0
        for i, s in enumerate(socks):
            try:
                s.settimeout(2)
                s.sendall(b"ping%d" % i)
                alive += s.recv(100) == b"ping%d" % i
            except OSError:
                pass
        st = status(p)
        print("workers after the reload:", [(w["generation"], w["state"], w["tunnels"]) for w in st["workers"]])
        print(f"tunnels that still echo: {alive} of {len(socks)}")
        print("\n".join(line.split("] ", 2)[-1] for line in p.error_text().splitlines() if "hand-over" in line))
        for s in socks:
            s.close()
    finally:
        p.stop()
        b.close()
