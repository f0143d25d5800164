import os
import sys, time, socket
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from _h import *

def handler(conn):
    while True:
        head = conn.read_head()
        if head is None: return
        body = conn.read_body(head)
        t = head.target
        if t == "/chunked":
            conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n")
        elif t == "/204":
            conn.send(b"HTTP/1.1 204 No Content\r\n\r\n")
        elif t == "/304":
            conn.send(b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n")
        elif t == "/interim":
            conn.send(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + respond(200, b"x"*10))
        elif t == "/big":
            conn.send(respond(200, b"x"*(8*1024*1024)))
        elif t == "/slow":
            time.sleep(3); return
        elif t == "/close":
            conn.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"y"*20); return
        else:
            conn.send(respond(200, b"x"*100))

be = RawBackend(handler)
p = proxy([{"path": "/dead", "to": "http://127.0.0.1:1"}, {"path": "/", "to": be.url, "timeout": 1}], workers=1)
R = lambda path, extra=b"": b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n" + extra + b"Connection: close\r\n\r\n"
cases = [
 ("ok", R(b"/ok")),
 ("head", b"HEAD /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
 ("chunked", R(b"/chunked")),
 ("204", R(b"/204")),
 ("304", R(b"/304")),
 ("interim", R(b"/interim")),
 ("close-delim", R(b"/close")),
 ("slow504", R(b"/slow")),
 ("dead502", R(b"/dead")),
 ("pipelined3", b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
 ("bad400", b"GARBAGE\r\n\r\n"),
 ("414", b"GET /" + b"a"*70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
 ("431", b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a"*70000 + b"\r\n\r\n"),
 ("501", b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"),
 ("505", b"GET / HTTP/3.0\r\nHost: x\r\n\r\n"),
 ("http10", b"GET /ok HTTP/1.0\r\n\r\n"),
 ("inject-ua", R(b"/ok", b'User-Agent: a"b\\c\x01\x7f\xc3\xa9\xff\r\nReferer: r" x\r\n')),
 ("inject-target", R(b'/o"k\\\x01\x7f\xff')),
]
for name, data in cases:
    out = send(p, data, timeout=5)
    n = len(p.access_lines())
    time.sleep(0.05)
    print(f"{name:12} resp={out[:40]!r} len={len(out)}")
time.sleep(1.5)
for l in p.access_lines(): print(" ", l[:300])
print("--- error log")
print(p.error_text()[-3000:])
