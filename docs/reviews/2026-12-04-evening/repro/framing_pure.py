"""Pure-function check: what parse_request + rewrite.request_head send to the backend,
and how a strict parser (a fresh llhttp) frames it."""
import sys; sys.path.insert(0, ".")
import httptools
from conf.model import Limits
from worker.http1 import HttpError, parse_request
from worker.rewrite import request_head
from worker.headchecks import NO_CALLBACKS

L = Limits()
def show(raw):
    try:
        h = parse_request(raw, L)
    except HttpError as e:
        print(f"{raw[:60]!r}\n   -> refused {e.status} {e.message}"); return
    out = request_head(h, h.target, b"Host: b\r\n", b"X-Forwarded-For: 1.2.3.4\r\n",
                       b"X-Forwarded-Proto: http\r\n", None)
    p = httptools.HttpRequestParser(NO_CALLBACKS)
    try:
        p.feed_data(out); v = "llhttp ok"
    except Exception as e:
        v = f"llhttp {type(e).__name__}: {e}"
    print(f"{raw[:60]!r}\n   proxy frames: chunked={h.chunked} CL={h.content_length} upgrade={h.upgrade}\n   sent: {out!r}\n   {v}")

H = b"Host: a\r\n"
cases = [
    b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 005\r\n\r\n",
    b"POST / HTTP/1.1\r\n" + H + b"content-length:5\r\n\r\n",
    b"POST / HTTP/1.1\r\n" + H + b"Content-Length:\t5\t\r\n\r\n",
    b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding:\tchunked\r\n\r\n",
    b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: ,chunked\r\n\r\n",
    b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: CHUNKED\r\n\r\n",
    b"POST / HTTP/1.0\r\n" + H + b"Content-Length: 05\r\nConnection: keep-alive\r\n\r\n",
    b"POST / HTTP/1.1\r\n" + H + b"Connection: content-length\r\nContent-Length: 05\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + H + b"Connection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 00\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + H + b"Connection: upgrade\r\nUpgrade: websocket\r\nTransfer-Encoding:  chunked\r\n\r\n",
    b"VERSION-CONTROL / HTTP/1.1\r\n" + H + b"Content-Length: 03\r\n\r\n",
    b"FOO / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n",
    b"POST http://a/ HTTP/1.1\r\nHost: x\r\nContent-Length: 007\r\n\r\n",
    b"DESCRIBE / HTTP/1.1\r\n" + H + b"\r\n",
    b"PLAY / HTTP/1.1\r\n" + H + b"\r\n",
    b"PLAYX / HTTP/1.1\r\n" + H + b"\r\n",
    b"foo / HTTP/1.1\r\n" + H + b"\r\n",
]
for c in cases:
    show(c)
