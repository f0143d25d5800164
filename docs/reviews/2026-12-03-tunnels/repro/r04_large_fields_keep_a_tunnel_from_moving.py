"""r04: a plain tunnel whose User-Agent and Referer carry ~8 KB of obs-text each is not handed over on reload
(its first hand-over record exceeds the SEQPACKET size, EMSGSIZE): it stays with the old worker, which lives on
until graceful_timeout and then cuts it."""
import os, signal, socket, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from h import *
from rawbackend import echo_after_101
b = RawBackend(echo_after_101, timeout=30)
with proxy([{"path": "/ws/", "to": b.ws_url + "/ws/"}], workers=1, mpm={"graceful_timeout": 4}) as p:
    ua = "Mozilla/5.0 " + "\u00e9" * 8000          # obs-text (RFC 9110 allows it in a field value)
    s = socket.create_connection(("127.0.0.1", p.port)); s.settimeout(10)
    s.sendall(upgrade_request("/ws/big", extra=f"User-Agent: {ua}\r\nReferer: http://x/{ua}\r\n").replace(
        ua.encode(), ua.encode("latin-1")))
    head, buf = read_head(s)
    print("101?", status_of(head))
    old = p.worker_pids()
    os.kill(p.proc.pid, signal.SIGHUP)
    p.wait_ready(generation=2)
    time.sleep(1.5)
    st = status(p)
    print("1.5 s after the reload:", [(w["pid"] in old and "old" or "new", w["state"], w["tunnels"]) for w in st["workers"]])
    t0 = time.time()
    try:
        s.sendall(b"ping"); print("echo:", s.recv(10))
        while s.recv(10):
            pass
        print("tunnel cut after", round(time.time() - t0, 1), "s")
    except OSError as e:
        print("tunnel error", e, round(time.time() - t0, 1))
    print([l.split("] ", 3)[-1] for l in p.error_text().splitlines() if "hand-over" in l or "timeout" in l])
b.close()
