"""HTTP/1.1 end to end against a real proxy (one worker): extension methods whole, split and
pipelined, odd framing spellings, and how soon a long token without a space is refused.
Run: cd /tmp/rev && /work/main/.venv/bin/python repro/h1_e2e.py"""
import socket, sys, tempfile, time
sys.path[:0] = [".", "tests"]
from proxyproc import Proxy
from rawbackend import RawBackend, respond, serve_simple

backend = RawBackend(lambda c: serve_simple(c, lambda h, b: respond(200, h.method.encode() + b" body=" + b)))
proxy = Proxy(tempfile.mkdtemp(), [{"path": "/", "to": backend.url + "/"}], workers=1)
proxy.start()

def talk(pieces, wait=1.0, gap=0.15):
    s = socket.create_connection(("127.0.0.1", proxy.port)); s.settimeout(wait)
    t0 = time.monotonic()
    for p in pieces:
        s.sendall(p); time.sleep(gap)
    out = b""
    try:
        while True:
            d = s.recv(65536)
            if not d: break
            out += d
    except socket.timeout:
        pass
    s.close()
    return out, time.monotonic() - t0

H = b"Host: a\r\n"
CRLF, END = b"\r\n", b"\r\n\r\n"
try:
    cases = {
        "split extension method, body, then keep-alive GET": [
            b"VERS", b"ION-CONTROL /v HTTP/1.1\r\n" + H + b"Content-Length: 005\r\n\r\nhello",
            b"GET /after HTTP/1.1\r\n" + H + b"\r\n"],
        "whole extension method + pipelined GET in one write": [
            b"PURGE_ALL /p HTTP/1.1\r\n" + H + b"\r\nGET /next HTTP/1.1\r\n" + H + b"\r\n"],
        "extension method, chunked body, then GET": [
            b"MKREDIRECTREF /r HTTP/1.1\r\n" + H + b"Transfer-Encoding:\tchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            b"GET /n HTTP/1.1\r\n" + H + b"\r\n"],
        "RTSP-named method (llhttp knows it, refuses it for HTTP)": [b"PLAY /x HTTP/1.1\r\n" + H + b"\r\n"],
        "lower-case method": [b"purge /x HTTP/1.1\r\n" + H + b"\r\n"],
    }
    for label, pieces in cases.items():
        backend.reset_records()
        out, _ = talk(pieces)
        print(f"== {label}\n  client got: {[l for l in out.split(CRLF) if l.startswith(b'HTTP/') or b'body=' in l]}")
        print(f"  backend heads: {[r.raw.split(END)[0] for r in backend.requests]}")
    for label, first in [("'XGETX' with no space (previously refused at its 2nd byte)", b"XGETX"),
                         ("'GETX' (no space)", b"GETX")]:
        out, t = talk([first], wait=6.0)
        print(f"== {label}: answer {out.split(CRLF)[0]!r} after {t:.2f} s")
finally:
    proxy.stop(); backend.close()
