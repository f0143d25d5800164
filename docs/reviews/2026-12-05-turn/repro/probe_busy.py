"""While one worker relays a busy tunnel (ping-pong, ~1 ms apart), check: an idle tunnel's
idle timeout, an HTTP request's access-log line, mpmctl reopen (SIGHUP), reload hand-over,
and SIGTERM stop latency.  Run: PYTHONPATH=.:tests python docs/reviews/2026-12-05-turn/repro/probe_busy.py [native|python]"""
import os, sys, time, socket, threading, signal, tempfile
sys.path.insert(0, "tests")
from proxyproc import Proxy
from rawbackend import RawBackend, echo_after_101, serve_simple
from wsutil import upgrade_request
from rawsock import read_head

mode = sys.argv[1] if len(sys.argv) > 1 else "native"
def handler(conn):
    head = conn.read_head() if False else None
    return echo_after_101(conn) if b"upgrade" in conn.sock.recv(0, socket.MSG_PEEK) or True else None
raw = RawBackend(echo_after_101, timeout=60)
plain = RawBackend(serve_simple, timeout=60)
d = tempfile.mkdtemp(prefix="probe-busy-")
p = Proxy(d, [{"path": "/ws/", "to": raw.ws_url + "/ws/", "timeout": 1.0},
              {"path": "/busy/", "to": raw.ws_url + "/busy/", "timeout": 30},
              {"path": "/plain/", "to": plain.url + "/plain/"}], workers=1,
          environ={"MPM_NATIVE_RELAY": "0" if mode == "python" else "1"})
p.start()
def tunnel(path):
    s = p.connect(10)
    s.sendall(upgrade_request(path))
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    assert b" 101 " in head, head
    return s
stop = threading.Event()
count = [0]
def pingpong(s):
    s.settimeout(5)
    while not stop.is_set():
        try:
            s.sendall(b"x" * 64); got = 0
            while got < 64:
                d_ = s.recv(64)
                if not d_: return
                got += len(d_)
            count[0] += 1
        except OSError:
            return
        time.sleep(0.001)
busy = tunnel("/busy/a")
t = threading.Thread(target=pingpong, args=(busy,), daemon=True); t.start()
time.sleep(0.5)
try:
    # 1. idle timeout of another tunnel (route timeout 1 s)
    idle = tunnel("/ws/idle"); t0 = time.monotonic(); idle.settimeout(5)
    try:
        r = idle.recv(10)
    except Exception as e:
        r = e
    print(f"idle tunnel closed after {time.monotonic()-t0:.2f}s ({r!r}); expected ~1.0-1.3")
    # 2. access-log line of a plain request
    t0 = time.monotonic()
    s = p.connect(); s.sendall(b"GET /plain/x HTTP/1.1\r\nHost: a\r\n\r\n"); s.recv(4096)
    while not any("/plain/x" in l for l in p.access_lines()):
        time.sleep(0.005)
        if time.monotonic() - t0 > 5: break
    print(f"access line after {time.monotonic()-t0:.3f}s")
    s.close()
    # 3. reopen: move the access log, mpmctl reopen, a request: the line lands in a new file
    os.rename(p.access_log, p.access_log + ".1")
    t0 = time.monotonic(); r = p.mpmctl("reopen"); 
    s = p.connect(); s.sendall(b"GET /plain/y HTTP/1.1\r\nHost: a\r\n\r\n"); s.recv(4096); s.close()
    while not os.path.exists(p.access_log) or not any("/plain/y" in l for l in p.access_lines()):
        time.sleep(0.005)
        if time.monotonic() - t0 > 5: break
    print(f"reopen: {r.returncode} new file with line after {time.monotonic()-t0:.3f}s: {os.path.exists(p.access_log)}")
    # 4. reload with the busy tunnel: handed over, old worker gone
    old = p.worker_pids()
    n0 = count[0]; t0 = time.monotonic()
    r = p.reload()
    import psutil
    while any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in old):
        time.sleep(0.01)
        if time.monotonic() - t0 > 15: break
    print(f"reload rc={r.returncode}: old worker gone after {time.monotonic()-t0:.2f}s; pingpong alive: {t.is_alive()} msgs during: {count[0]-n0}")
    time.sleep(0.3); print("msgs still flowing:", count[0] - n0, "->", end=" "); n1 = count[0]; time.sleep(0.3); print(count[0]-n1)
    # 5. SIGTERM to the (new) worker directly: graceful stop; the master respawns
    new = p.worker_pids()
    t0 = time.monotonic(); os.kill(new[0], signal.SIGTERM)
    while psutil.pid_exists(new[0]) and psutil.Process(new[0]).status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.005)
        if time.monotonic() - t0 > 15: break
    print(f"SIGTERM: worker gone after {time.monotonic()-t0:.3f}s; pingpong alive {t.is_alive()}")
    print(p.error_text()[-2500:])
finally:
    stop.set()
    p.stop(); raw.close(); plain.close()
