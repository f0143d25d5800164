"""Chunked / CL / close-delimited relaying with the new response read sizes: bodies checked
byte for byte to an HTTP/1.1 client (pipelined, keep-alive), an HTTP/1.0 client (de-chunked)
and an HTTP/2 client, with the access log's %b.
cd /tmp/rev-fixes/tests && /work/main/.venv/bin/python THIS"""
import sys, os, tempfile, time, hashlib, random, socket
sys.path.insert(0, os.getcwd())
from h2client import H2Client
from proxyproc import Proxy
from rawbackend import RawBackend

def chunked(sizes, trailers=b""):
    rnd = random.Random(len(sizes))
    out, body = bytearray(), bytearray()
    for s in sizes:
        data = bytes(rnd.getrandbits(8) for _ in range(min(s, 64))) * (s // 64 + 1)
        data = data[:s]
        body += data
        out += b"%x\r\n" % s + data + b"\r\n"
    out += b"0\r\n" + trailers + b"\r\n"
    return bytes(out), bytes(body)

CASES = {
    "/k16": [16384] * 6,
    "/k16m": [16384 - 7, 7] * 4 + [16384 * 3],
    "/one": [1] * 20000,
    "/big": [1 << 20],
    "/mix": [random.Random(5).randint(1, 40000) for _ in range(60)],
    "/boundary": [16384 - 5 - 2 - 2, 100, 16384 - 9, 1, 1],
}
BODIES = {}
WIRE = {}
for k, sizes in CASES.items():
    WIRE[k], BODIES[k] = chunked(sizes, b"X-T: 1\r\n" if k in ("/k16", "/one") else b"")

def handler(conn):
    while (head := conn.read_head()) is not None:
        t = head.target.split("?")[0]
        if t == "/cl":
            body = bytes(range(256)) * 2000
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        elif t == "/close":
            body = bytes(range(256)) * 2000
            conn.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body)
            return
        else:
            # head and the chunked body written in pieces that straddle 16 KiB boundaries
            data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + WIRE[t]
            for i in range(0, len(data), 16384 + 3):
                conn.sock.sendall(data[i:i + 16384 + 3])
BODIES["/cl"] = BODIES["/close"] = bytes(range(256)) * 2000

def dechunk(buf, pos):
    body = bytearray()
    while True:
        e = buf.index(b"\r\n", pos); size = int(buf[pos:e].split(b";")[0], 16); pos = e + 2
        if size == 0:
            while True:
                e = buf.index(b"\r\n", pos); line = buf[pos:e]; pos = e + 2
                if not line: return bytes(body), pos
        body += buf[pos:pos + size]; pos += size + 2

backend = RawBackend(handler)
d = tempfile.mkdtemp(prefix="rev-fixes-")
proxy = Proxy(d, [{"path": "/", "to": backend.url + "/"}], workers=1, log={"format": "combined"})
proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"}]
bad = 0
try:
    proxy.start()
    paths = list(CASES) + ["/cl"]
    # HTTP/1.1, all pipelined on one connection
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    s.sendall(b"".join(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % p.encode() for p in paths))
    buf = bytearray()
    pos = 0
    for p in paths:
        while buf.find(b"\r\n\r\n", pos) < 0: buf += s.recv(1 << 20)
        he = buf.index(b"\r\n\r\n", pos); head = bytes(buf[pos:he]); pos = he + 4
        while True:
            try:
                if b"chunked" in head.lower():
                    body, npos = dechunk(buf, pos)
                else:
                    n = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
                    if len(buf) < pos + n: raise ValueError
                    body, npos = bytes(buf[pos:pos + n]), pos + n
                break
            except (ValueError, IndexError):
                buf += s.recv(1 << 20)
        pos = npos
        ok = body == BODIES[p]; bad += not ok
        print("1.1", p, head.split(b"\r\n")[0], len(body), "OK" if ok else "MISMATCH")
    s.close()
    # HTTP/1.0: de-chunked, read to the close
    for p in paths + ["/close"]:
        s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        s.sendall(b"GET %s HTTP/1.0\r\n\r\n" % p.encode())
        data = bytearray()
        while (chunk := s.recv(1 << 20)): data += chunk
        body = bytes(data[data.index(b"\r\n\r\n") + 4:])
        ok = body == BODIES[p]; bad += not ok
        print("1.0", p, len(body), "OK" if ok else "MISMATCH")
        s.close()
    # HTTP/2
    c = H2Client(proxy.port)
    for p in paths + ["/close"]:
        sid = c.request("GET", p)
        c.wait(lambda: c.streams[sid].finished, 20, p)
        ok = c.streams[sid].body == BODIES[p]; bad += not ok
        print("h2 ", p, len(c.streams[sid].body), "OK" if ok else "MISMATCH", "trailers", c.streams[sid].trailers)
    c.close()
    time.sleep(0.5)
    print("--- access (%b)")
    for line in proxy.access_lines(): print(line[line.index('"GET'):][:70])
    print("errors:", [l for l in proxy.error_text().splitlines() if "[error]" in l])
    print("MISMATCHES:", bad)
finally:
    proxy.stop(); backend.close()
