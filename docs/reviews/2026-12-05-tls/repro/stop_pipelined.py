"""A stop (mpmctl reload) while the lane relays a large response to a TLS client that has
pipelined two more requests in two records read ahead together: are both answered?"""
import os, socket, sys, tempfile, time
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from scen import run, get, read_resp, BIG

def sc(s, buf, out, proxy):
    s.sendall(get("/big-A"))
    first = s.recv(1000)                 # the response has begun: RELAYING, the client slow
    time.sleep(0.3)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
    s.sendall(get("/B")); s.sendall(get("/C"))       # a record each, one segment
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
    time.sleep(0.3)                      # read_early takes B; C stays in the SSL object
    import threading
    th = threading.Thread(target=lambda: out.__setitem__("reload", proxy.reload().returncode)); th.start()
    s.settimeout(8)
    buf += first
    t0 = time.monotonic()
    res = []
    try:
        HE = b"\r\n\r\n"
        while HE not in buf: buf += s.recv(65536)
        end = buf.index(HE) + 4
        while len(buf) < end + BIG:
            buf += s.recv(65536); time.sleep(0.006)
        res.append(("A", time.monotonic() - t0)); del buf[:end + BIG]
        th.join()
        res.append(read_resp(s, buf)[:10])
        res.append(read_resp(s, buf)[:10])
    except Exception as e:
        res.append(repr(e)[:80])
    out["res"] = res; out["secs"] = round(time.monotonic() - t0, 2)

if __name__ == "__main__":
    for sw in ("1", "0"):
        with tempfile.TemporaryDirectory() as d:
            r = run(sw, sc, d); r["access"] = [a[:25] + a[-16:] for a in r["access"]]
            print("LANE_TLS=" + sw, r, flush=True)
