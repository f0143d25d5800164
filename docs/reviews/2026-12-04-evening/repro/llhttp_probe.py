import sys; sys.path.insert(0, ".")
import httptools
from worker.headchecks import NO_CALLBACKS
def t(data):
    p = httptools.HttpRequestParser(NO_CALLBACKS)
    try:
        p.feed_data(data); r = "ok"
    except Exception as e:
        r = f"{type(e).__name__}: {e}"
    print(repr(data[:70]), "->", r)
H=b"Host: a\r\n"
for d in [
 b"PRI / HTTP/1.1\r\n"+H+b"\r\n",
 b"PRI * HTTP/1.1\r\n"+H+b"\r\n",
 b"DESCRIBE / HTTP/1.1\r\n"+H+b"\r\n",
 b"SETUP / HTTP/1.1\r\n"+H+b"\r\n",
 b"GET_PARAMETER / HTTP/1.1\r\n"+H+b"\r\n",
 b"SOURCE / HTTP/1.1\r\n"+H+b"\r\n",
 b"QUERY / HTTP/1.1\r\n"+H+b"\r\n",
 b"POST / HTTP/1.1\r\n"+H+b"Content-Length:\r\n 5\r\n\r\n",
 b"POST / HTTP/1.1\r\n"+H+b"Content-Length: 5\r\n 0\r\n\r\n",
 b"POST / HTTP/1.1\r\n"+H+b"Transfer-Encoding:\r\n chunked\r\n\r\n",
 b"POST / HTTP/1.1\r\n"+H+b"Transfer-Encoding: chunked\r\n , x\r\n\r\n",
 b"POST / HTTP/1.1\r\n"+H+b"Content-Length: 5\r\nContent-Length: 5\r\n\r\n",
 b"POST / HTTP/1.1\r\n"+H+b"Content-Length: 05\r\n\r\n",
 b"POST / HTTP/1.1\r\n"+H+b"Content-Length:\t5\t\r\n\r\n",
 b"POST / HTTP/1.1\r\n"+H+b"Content-Length: 5 5\r\n\r\n",
 b"POST / HTTP/1.1\r\n"+H+b"Content-Length: +5\r\n\r\n",
 b"POST / HTTP/1.1\r\n"+H+b"Content-Length: 99999999999999999999999\r\n\r\n",
 b"POST / HTTP/1.1\r\n"+H+b"Content-Length: 18446744073709551615\r\n\r\n",
 b"POST / HTTP/1.1\r\n"+H+b"Content-Length: 18446744073709551616\r\n\r\n",
 b"POST / HTTP/1.1\r\n"+H+b"Content-Length: \xd9\xa5\r\n\r\n",
 b"POST / HTTP/1.1\r\n"+H+b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
 b"GET / HTTP/1.1\r\n"+H+b"Connection: upgrade\r\nUpgrade: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
 b"POST / HTTP/1.0\r\n"+H+b"Transfer-Encoding: chunked\r\n\r\n",
 b"CONNECT a:1 HTTP/1.1\r\n"+H+b"Content-Length: 5\r\n\r\n",
 b"-- / HTTP/1.1\r\n"+H+b"\r\n",
 b"POST / HTTP/1.1\r\n"+H+b"Content-Length: 5\r\n\r\n",
]: t(d)
