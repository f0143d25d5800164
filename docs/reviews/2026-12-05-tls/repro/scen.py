"""Lane TLS vs Python path (MPM_NATIVE_LANE_TLS=1/0): several hostile client/backend scenarios."""
import os, socket, ssl, sys, tempfile, time, struct, threading
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from proxyproc import Proxy
from rawbackend import RawBackend, respond
from support import serve_tls

BIG = 8 * 1024 * 1024

def handler(conn):
    while (head := conn.read_head()) is not None:
        conn.read_body(head)
        t = head.target
        if t.startswith("/cut"):
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n" + b"x" * 5000)
            time.sleep(0.3)
            conn.sock.close(); conn.eof.set()
            return
        if t.startswith("/stall"):
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n" + b"x" * 5000)
            time.sleep(4)
            return
        if t.startswith("/big"):
            conn.send(respond(200, b"y" * BIG))
            continue
        if t.startswith("/slow"):
            time.sleep(0.5)
        conn.send(respond(200, f"on {conn.index}: {t}".encode()))

def get(p): return b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % p.encode()

def read_resp(sock, buf):
    HE = b"\r\n\r\n"
    while HE not in buf:
        c = sock.recv(65536)
        if not c: raise EOFError(bytes(buf))
        buf += c
    end = buf.index(HE) + 4
    n = int(bytes(buf[:end]).lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(buf) < end + n:
        c = sock.recv(65536)
        if not c: raise EOFError("in body")
        buf += c
    body = bytes(buf[end:end+n]); del buf[:end+n]; return body

def run(switch, scenario, tmp):
    backend = RawBackend(handler)
    proxy = Proxy(tmp, [{"path": "/", "to": backend.url + "/", "timeout": 1}], workers=1,
                  environ={"MPM_NATIVE_LANE_TLS": switch})
    serve_tls(proxy, tmp)
    # client context without ragged-EOF suppression
    ca_ctx = None
    proxy.start()
    out = {}
    try:
        raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        s = proxy.wrap(raw)
        s.suppress_ragged_eofs = False
        buf = bytearray()
        s.sendall(get("/first")); read_resp(s, buf)
        s.sendall(get("/second")); read_resp(s, buf)      # in the lane now
        scenario(s, buf, out, proxy)
        time.sleep(1.5)
    finally:
        proxy.stop(); backend.close()
    out["access"] = [l.split('"', 1)[1][:80] + " | " + " ".join(l.split()[8:10]) for l in open(proxy.access_log)][2:]
    err = open(proxy.error_log).read()
    out["err"] = [l[-160:] for l in err.splitlines() if "Traceback" in l or "rror" in l][:6]
    return out

def sc_cut(s, buf, out, proxy, path="/cut"):
    s.sendall(get(path))
    got = 0
    try:
        while True:
            c = s.recv(65536)
            if not c: out["end"] = "clean EOF (close_notify)"; break
            got += len(c)
    except ssl.SSLEOFError as e: out["end"] = "ragged EOF (no close_notify)"
    except OSError as e: out["end"] = repr(e)
    out["got"] = got

def sc_stall(s, buf, out, proxy):
    sc_cut(s, buf, out, proxy, "/stall")

def sc_close_notify_waiting(s, buf, out, proxy):
    s.sendall(get("/slow"))
    s.setblocking(False)
    try: s.unwrap()
    except ssl.SSLWantReadError: pass
    s.setblocking(True); s.settimeout(5)
    try:
        body = read_resp(s, buf); out["resp"] = body[:30]
    except Exception as e: out["resp"] = repr(e)

def sc_fin_waiting(s, buf, out, proxy):
    s.sendall(get("/slow"))
    s.shutdown(socket.SHUT_WR)          # FIN without close_notify
    try:
        body = read_resp(s, buf); out["resp"] = body[:30]
    except Exception as e: out["resp"] = repr(e)

def sc_rst_big(s, buf, out, proxy):
    s.sendall(get("/big"))
    s.recv(1000)
    time.sleep(0.5)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()

def sc_stall_big(s, buf, out, proxy):
    s.sendall(get("/big"))
    s.recv(1000)
    time.sleep(3)          # route timeout 1s, the client never reads more
    s.settimeout(5)
    got = 0
    try:
        while True:
            c = s.recv(65536)
            if not c: out["end"] = "clean EOF"; break
            got += len(c)
    except ssl.SSLEOFError: out["end"] = "ragged EOF"
    except OSError as e: out["end"] = repr(e)
    out["got"] = got

def sc_slow_reader_big(s, buf, out, proxy):
    s.sendall(get("/big"))
    total = 0
    s.settimeout(10)
    while True:
        c = s.recv(7000)
        if not c: out["end"] = "EOF"; break
        total += len(c); time.sleep(0.0005)
        if total >= BIG + 30: break
    s.sendall(get("/after")); out["after"] = read_resp(s, buf if False else bytearray(b""))[:20] if False else None
    out["total"] = total

if __name__ == "__main__":
    names = sys.argv[1:] or ["cut", "close_notify_waiting", "fin_waiting", "rst_big", "stall_big"]
    for name in names:
        for sw in ("1", "0"):
            with tempfile.TemporaryDirectory() as d:
                r = run(sw, globals()["sc_" + name], d)
            print(name, "LANE_TLS=" + sw, r, flush=True)
