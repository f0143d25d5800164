"""The request corpus: (id, what, bytes). Each case is sent on a fresh client connection."""
H = b"Host: a.test\r\n"
def req(line=b"GET /c HTTP/1.1", *fields, body=b"", host=True):
    return line + b"\r\n" + (H if host else b"") + b"".join(f + b"\r\n" for f in fields) + b"\r\n" + body
TAIL = b"GET /next HTTP/1.1\r\nHost: a.test\r\n\r\n"
CH = b"5\r\nhello\r\n0\r\n\r\n"
def post_te(te, body=CH, extra=()):
    return req(b"POST /c HTTP/1.1", b"Transfer-Encoding: " + te, *extra, body=body) + TAIL

C = []
def case(i, what, data): C.append((i, what, data))

# A: field syntax
case("A01", "space before colon", req(b"GET /c HTTP/1.1", b"X-A : 1"))
case("A02", "tab before colon", req(b"GET /c HTTP/1.1", b"X-A\t: 1"))
case("A03", "obs-fold in X-A", req(b"GET /c HTTP/1.1", b"X-A: 1", b" folded"))
case("A04", "obs-fold tab", req(b"GET /c HTTP/1.1", b"X-A: 1", b"\tfolded"))
case("A05", "first field line starts with space", b"GET /c HTTP/1.1\r\n X-A: 1\r\nHost: a.test\r\n\r\n")
case("A06", "bare LF line endings", b"GET /c HTTP/1.1\nHost: a.test\nX-A: 1\n\n")
case("A07", "bare LF terminator only", b"GET /c HTTP/1.1\r\nHost: a.test\r\n\n")
case("A08", "bare CR in value", req(b"GET /c HTTP/1.1", b"X-A: 1\rX-B: 2"))
case("A09", "NUL in value", req(b"GET /c HTTP/1.1", b"X-A: 1\x002"))
case("A10", "NUL in name", req(b"GET /c HTTP/1.1", b"X-\x00A: 1"))
case("A11", "@ in name", req(b"GET /c HTTP/1.1", b"X@A: 1"))
case("A12", "space in name", req(b"GET /c HTTP/1.1", b"X A: 1"))
case("A13", "empty name", req(b"GET /c HTTP/1.1", b": 1"))
case("A14", "no colon", req(b"GET /c HTTP/1.1", b"X-A 1"))
case("A15", "leading/trailing tab in value", req(b"GET /c HTTP/1.1", b"X-A:\t1\t"))
case("A16", "DEL in value", req(b"GET /c HTTP/1.1", b"X-A: 1\x7f"))
case("A17", "UTF-8 in value (obs-text)", req(b"GET /c HTTP/1.1", "X-A: caf\u00e9".encode()))
case("A18", "VT in value", req(b"GET /c HTTP/1.1", b"X-A: 1\x0b2"))
case("A19", "empty value", req(b"GET /c HTTP/1.1", b"X-A:"))
case("A20", "underscore name", req(b"GET /c HTTP/1.1", b"X_A: 1"))
case("A21", "non-ASCII in name", req(b"GET /c HTTP/1.1", b"X-\xc3\xa9: 1"))
case("A22", "Content_Length underscore + body", req(b"POST /c HTTP/1.1", b"Content_Length: 5", body=b"hello") )
# B: request line
case("B01", "double space after method", b"GET  /c HTTP/1.1\r\n" + H + b"\r\n")
case("B02", "tab separators", b"GET\t/c\tHTTP/1.1\r\n" + H + b"\r\n")
case("B03", "trailing space after version", b"GET /c HTTP/1.1 \r\n" + H + b"\r\n")
case("B04", "lowercase version", b"GET /c http/1.1\r\n" + H + b"\r\n")
case("B05", "HTTP/1.2", b"GET /c HTTP/1.2\r\n" + H + b"\r\n")
case("B06", "HTTP/2.0 in h1", b"GET /c HTTP/2.0\r\n" + H + b"\r\n")
case("B07", "HTTP/0.9", b"GET /c\r\n\r\n")
case("B08", "HTTP/01.1", b"GET /c HTTP/01.1\r\n" + H + b"\r\n")
case("B09", "lowercase method", b"get /c HTTP/1.1\r\n" + H + b"\r\n")
case("B10", "unknown method FOO", b"FOO /c HTTP/1.1\r\n" + H + b"\r\n")
case("B11", "method with ;", b"G;ET /c HTTP/1.1\r\n" + H + b"\r\n")
case("B12", "CONNECT authority", b"CONNECT a.test:443 HTTP/1.1\r\n" + H + b"\r\n")
case("B13", "OPTIONS *", b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n")
case("B14", "raw UTF-8 in target", "GET /caf\u00e9 HTTP/1.1\r\n".encode() + H + b"\r\n")
case("B15", "quote and <> in target", b'GET /c"<x> HTTP/1.1\r\n' + H + b"\r\n")
case("B16", "backslash in target", b"GET /c\\..\\x HTTP/1.1\r\n" + H + b"\r\n")
case("B17", "{}|^` in target", b"GET /c{}|^` HTTP/1.1\r\n" + H + b"\r\n")
case("B18", "bare CR ends request line", b"GET /c HTTP/1.1\r" + H + b"\r\n")
case("B19", "bare LF ends request line only", b"GET /c HTTP/1.1\n" + H + b"\r\n")
case("B20", "empty line before request", b"\r\nGET /c HTTP/1.1\r\n" + H + b"\r\n")
case("B21", "fragment in target", b"GET /c#frag HTTP/1.1\r\n" + H + b"\r\n")
case("B22", "target without slash", b"GET c HTTP/1.1\r\n" + H + b"\r\n")
case("B23", "PRI h2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
case("B24", "method longer than usual, token", b"PROPFIND-X_Y.Z~! /c HTTP/1.1\r\n" + H + b"\r\n")
# C: Content-Length
case("C01", "GET with CL body, then pipelined", req(b"GET /c HTTP/1.1", b"Content-Length: 5", body=b"hello") + TAIL)
case("C02", "CL leading zeros 005", req(b"POST /c HTTP/1.1", b"Content-Length: 005", body=b"hello") + TAIL)
case("C03", "CL +5", req(b"POST /c HTTP/1.1", b"Content-Length: +5", body=b"hello") + TAIL)
case("C04", "CL 5,5", req(b"POST /c HTTP/1.1", b"Content-Length: 5,5", body=b"hello") + TAIL)
case("C05", "CL 5 twice", req(b"POST /c HTTP/1.1", b"Content-Length: 5", b"Content-Length: 5", body=b"hello") + TAIL)
case("C06", "CL 5 and 6", req(b"POST /c HTTP/1.1", b"Content-Length: 5", b"Content-Length: 6", body=b"hello!") + TAIL)
case("C07", "CL tab around", req(b"POST /c HTTP/1.1", b"Content-Length:\t5\t", body=b"hello") + TAIL)
case("C08", "CL huge 2^64+5", req(b"POST /c HTTP/1.1", b"Content-Length: 18446744073709551621", body=b"hello") + TAIL)
case("C09", "CL 0x5", req(b"POST /c HTTP/1.1", b"Content-Length: 0x5", body=b"hello") + TAIL)
case("C10", "CL empty", req(b"POST /c HTTP/1.1", b"Content-Length:", body=b"") + TAIL)
case("C11", "CL -1", req(b"POST /c HTTP/1.1", b"Content-Length: -1") + TAIL)
case("C12", "CL 5 5 (space)", req(b"POST /c HTTP/1.1", b"Content-Length: 5 5", body=b"hello") + TAIL)
case("C13", "CL obs-folded", req(b"POST /c HTTP/1.1", b"Content-Length:", b" 5", body=b"hello") + TAIL)
case("C14", "CL with VT", req(b"POST /c HTTP/1.1", b"Content-Length: \x0b5", body=b"hello") + TAIL)
case("C15", "CL short body then next (POST 10, sends 5+TAIL)", req(b"POST /c HTTP/1.1", b"Content-Length: 10", body=b"hello") + TAIL)
case("C16", "CL 1-digit unicode digit", req(b"POST /c HTTP/1.1", "Content-Length: \u0665".encode(), body=b"hello") + TAIL)
# D: Transfer-Encoding spellings
for i, te in enumerate([b"chunked", b"Chunked", b"CHUNKED", b" chunked", b"chunked ", b"\tchunked",
                        b"chunked, chunked", b"identity, chunked", b"gzip, chunked", b"chunked, gzip",
                        b"x-chunked", b"chunkedx", b"chunked;q=1", b'"chunked"', b"chunked,", b",chunked",
                        b"\x0bchunked", b"chunk", b"identity", b"cHuNkEd"], 1):
    case("D%02d" % i, "TE: %r" % te, post_te(te))
case("D21", "TE twice gzip + chunked", req(b"POST /c HTTP/1.1", b"Transfer-Encoding: gzip", b"Transfer-Encoding: chunked", body=CH) + TAIL)
case("D22", "TE twice chunked + chunked", req(b"POST /c HTTP/1.1", b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked", body=CH) + TAIL)
case("D23", "Transfer_Encoding underscore", req(b"POST /c HTTP/1.1", b"Transfer_Encoding: chunked", body=CH) + TAIL)
case("D24", "TE obs-folded", req(b"POST /c HTTP/1.1", b"Transfer-Encoding:", b" chunked", body=CH) + TAIL)
case("D25", "CL then TE", req(b"POST /c HTTP/1.1", b"Content-Length: 5", b"Transfer-Encoding: chunked", body=CH) + TAIL)
case("D26", "TE then CL", req(b"POST /c HTTP/1.1", b"Transfer-Encoding: chunked", b"Content-Length: 5", body=CH) + TAIL)
case("D27", "TE on HTTP/1.0", b"POST /c HTTP/1.0\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" + CH)
case("D28", "TE on GET", req(b"GET /c HTTP/1.1", b"Transfer-Encoding: chunked", body=CH) + TAIL)
case("D29", "TE empty", req(b"POST /c HTTP/1.1", b"Transfer-Encoding:", body=b"") + TAIL)
case("D30", "TE with NUL", req(b"POST /c HTTP/1.1", b"Transfer-Encoding: chunked\x00", body=CH) + TAIL)
# E: chunk syntax
def chunked(body):
    return req(b"POST /c HTTP/1.1", b"Transfer-Encoding: chunked", body=body) + TAIL
E = [
    ("leading zeros 0005", b"0005\r\nhello\r\n0\r\n\r\n"),
    ("64 leading zeros", b"0" * 64 + b"5\r\nhello\r\n0\r\n\r\n"),
    ("uppercase hex A", b"A\r\nhellohello\r\n0\r\n\r\n"),
    ("lowercase hex a", b"a\r\nhellohello\r\n0\r\n\r\n"),
    ("0x5", b"0x5\r\nhello\r\n0\r\n\r\n"),
    ("space before size", b" 5\r\nhello\r\n0\r\n\r\n"),
    ("space after size", b"5 \r\nhello\r\n0\r\n\r\n"),
    ("tab after size", b"5\t\r\nhello\r\n0\r\n\r\n"),
    ("-5", b"-5\r\nhello\r\n0\r\n\r\n"),
    ("overflow 17 hex digits", b"10000000000000005\r\nhello\r\n0\r\n\r\n"),
    ("ext a=b", b"5;a=b\r\nhello\r\n0\r\n\r\n"),
    ("ext quoted with ;", b'5;a="x;y"\r\nhello\r\n0\r\n\r\n'),
    ("ext quoted with bare LF", b'5;a="x\ny"\r\nhello\r\n0\r\n\r\n'),
    ("ext bare ;", b"5;\r\nhello\r\n0\r\n\r\n"),
    ("ext space before ;", b"5 ;a=b\r\nhello\r\n0\r\n\r\n"),
    ("ext bare CR", b"5;a\rb\r\nhello\r\n0\r\n\r\n"),
    ("ext with NUL", b"5;a\x00\r\nhello\r\n0\r\n\r\n"),
    ("missing CRLF after data", b"5\r\nhelloXX0\r\n\r\n"),
    ("LF only after data", b"5\r\nhello\n0\r\n\r\n"),
    ("LF only after size", b"5\nhello\r\n0\r\n\r\n"),
    ("last chunk LF LF", b"5\r\nhello\r\n0\n\n"),
    ("000 last chunk", b"5\r\nhello\r\n000\r\n\r\n"),
    ("trailer X-T", b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"),
    ("trailer Content-Length", b"5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n"),
    ("trailer Transfer-Encoding", b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ("trailer Host", b"5\r\nhello\r\n0\r\nHost: evil\r\n\r\n"),
    ("trailer obs-fold", b"5\r\nhello\r\n0\r\nX-T: 1\r\n folded\r\n\r\n"),
    ("trailer no colon", b"5\r\nhello\r\n0\r\nXT\r\n\r\n"),
    ("trailer bare LF end", b"5\r\nhello\r\n0\r\nX-T: 1\n\n"),
    ("empty size line", b"\r\n5\r\nhello\r\n0\r\n\r\n"),
    ("chunk bigger than data then next req", b"a\r\nhello\r\n0\r\n\r\n"),
    ("size with +", b"+5\r\nhello\r\n0\r\n\r\n"),
    ("size with underscore", b"0_5\r\nhello\r\n0\r\n\r\n"),
]
for i, (what, body) in enumerate(E, 1):
    case("E%02d" % i, "chunk: " + what, chunked(body))
# F: versions and Host
case("F01", "HTTP/1.0 without Host", b"GET /c HTTP/1.0\r\n\r\n")
case("F02", "HTTP/1.1 without Host", b"GET /c HTTP/1.1\r\n\r\n")
case("F03", "two Host same", req(b"GET /c HTTP/1.1", b"Host: a.test"))
case("F04", "two Host differ", req(b"GET /c HTTP/1.1", b"Host: b.test"))
case("F05", "empty Host", b"GET /c HTTP/1.1\r\nHost:\r\n\r\n")
case("F06", "Host with userinfo", b"GET /c HTTP/1.1\r\nHost: u@a.test\r\n\r\n")
case("F07", "Host [::1]:80", b"GET /c HTTP/1.1\r\nHost: [::1]:80\r\n\r\n")
case("F08", "Host bad port", b"GET /c HTTP/1.1\r\nHost: a.test:bad\r\n\r\n")
case("F09", "Host with space", b"GET /c HTTP/1.1\r\nHost: a b\r\n\r\n")
case("F10", "Host a,b", b"GET /c HTTP/1.1\r\nHost: a.test,b.test\r\n\r\n")
case("F11", "Host with slash", b"GET /c HTTP/1.1\r\nHost: a.test/x\r\n\r\n")
case("F12", "absolute-form vs different Host", b"GET http://b.test/c HTTP/1.1\r\nHost: a.test\r\n\r\n")
case("F13", "absolute-form with userinfo", b"GET http://u@b.test/c HTTP/1.1\r\nHost: a.test\r\n\r\n")
case("F14", "absolute-form https", b"GET https://b.test/c HTTP/1.1\r\nHost: a.test\r\n\r\n")
case("F15", "absolute-form uppercase scheme", b"GET HTTP://B.TEST/c HTTP/1.1\r\nHost: a.test\r\n\r\n")
case("F16", "absolute-form without path", b"GET http://b.test HTTP/1.1\r\nHost: a.test\r\n\r\n")
case("F17", "absolute-form foo scheme", b"GET foo://b.test/c HTTP/1.1\r\nHost: a.test\r\n\r\n")
case("F18", "authority-form on GET", b"GET b.test:80 HTTP/1.1\r\nHost: a.test\r\n\r\n")
case("F19", "HTTP/1.0 keep-alive pipelined", b"GET /c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + TAIL)
case("F20", "Host with trailing dot and port", b"GET /c HTTP/1.1\r\nHost: A.Test.:8080\r\n\r\n")
case("F21", "absolute-form no Host", b"GET http://b.test/c HTTP/1.1\r\n\r\n")
case("F22", "Host with NUL-free but CTL tab", b"GET /c HTTP/1.1\r\nHost: a\t.test\r\n\r\n")
case("F23", "absolute-form with query+fragment", b"GET http://b.test/c?q#f HTTP/1.1\r\nHost: a.test\r\n\r\n")
case("F24", "Host with %", b"GET /c HTTP/1.1\r\nHost: a%2etest\r\n\r\n")
case("F25", "Host underscore", b"GET /c HTTP/1.1\r\nHost: a_b.test\r\n\r\n")
# G: paths
for i, t in enumerate([b"/%2e%2e/x", b"//c", b"/c?%00", b"/c%00", b"/c%", b"/c%zz", b"/c?a b",
                       b"/c/./d", b"/c;/../d", b"/%2F/c", b"?q", b"/c?#", b"/c/%2e/d"], 1):
    case("G%02d" % i, "target %r" % t, b"GET " + t + b" HTTP/1.1\r\n" + H + b"\r\n")
# X: Expect
case("X01", "Expect 100-continue with CL body", req(b"POST /c HTTP/1.1", b"Expect: 100-continue", b"Content-Length: 5", body=b"hello"))
case("X02", "Expect 100-continue GET no body", req(b"GET /c HTTP/1.1", b"Expect: 100-continue"))
case("X03", "Expect: foo", req(b"POST /c HTTP/1.1", b"Expect: foo", b"Content-Length: 5", body=b"hello"))
case("X04", "Expect 100-continue on HTTP/1.0", b"POST /c HTTP/1.0\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello")
case("X05", "Expect 100-Continue (case)", req(b"POST /c HTTP/1.1", b"Expect: 100-Continue", b"Content-Length: 5", body=b"hello"))
# K: Connection
case("K01", "Connection: X-Forwarded-For + own XFF", req(b"GET /c HTTP/1.1", b"Connection: X-Forwarded-For", b"X-Forwarded-For: 6.6.6.6"))
case("K02", "Connection: Host", req(b"GET /c HTTP/1.1", b"Connection: Host"))
case("K03", "Connection: Content-Length + CL body", req(b"POST /c HTTP/1.1", b"Connection: Content-Length", b"Content-Length: 5", body=b"hello") + TAIL)
case("K04", "Connection: Transfer-Encoding + chunked", req(b"POST /c HTTP/1.1", b"Connection: Transfer-Encoding", b"Transfer-Encoding: chunked", body=CH) + TAIL)
case("K05", "Connection: Authorization", req(b"GET /c HTTP/1.1", b"Connection: Authorization", b"Authorization: Basic eDp5"))
case("K06", "Connection: close, then pipelined", req(b"GET /c HTTP/1.1", b"Connection: close") + TAIL)
case("K07", "Connection: Keep-Alive on 1.0 w/ Keep-Alive hdr", b"GET /c HTTP/1.0\r\n" + H + b"Connection: Keep-Alive\r\nKeep-Alive: timeout=5\r\n\r\n")
case("K08", "Connection: Cookie", req(b"GET /c HTTP/1.1", b"Connection: Cookie", b"Cookie: s=1"))
case("K09", "Connection: X-Real-IP", req(b"GET /c HTTP/1.1", b"Connection: X-Real-IP", b"X-Real-IP: 6.6.6.6"))
case("K10", "Connection: close twice and keep-alive", req(b"GET /c HTTP/1.1", b"Connection: keep-alive", b"Connection: close") + TAIL)
case("K11", "Proxy-Connection", req(b"GET /c HTTP/1.1", b"Proxy-Connection: keep-alive"))
case("K12", "TE: trailers", req(b"GET /c HTTP/1.1", b"TE: trailers"))
case("K13", "Connection: Upgrade without Upgrade", req(b"GET /c HTTP/1.1", b"Connection: Upgrade"))
# U: Upgrade
case("U01", "Upgrade websocket on POST with CL body", req(b"POST /c HTTP/1.1", b"Connection: Upgrade", b"Upgrade: websocket", b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", b"Sec-WebSocket-Version: 13", b"Content-Length: 5", body=b"hello") + TAIL)
case("U02", "Upgrade websocket without Connection", req(b"GET /c HTTP/1.1", b"Upgrade: websocket"))
case("U03", "Upgrade h2c", req(b"GET /c HTTP/1.1", b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: h2c", b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"))
case("U04", "Upgrade websocket on GET (backend answers 200)", req(b"GET /c HTTP/1.1", b"Connection: Upgrade", b"Upgrade: websocket", b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", b"Sec-WebSocket-Version: 13") + TAIL)
case("U05", "Upgrade websocket on POST chunked", req(b"POST /c HTTP/1.1", b"Connection: Upgrade", b"Upgrade: websocket", b"Transfer-Encoding: chunked", body=CH) + TAIL)
# L: limits
case("L01", "request line 8190 bytes", b"GET /" + b"a" * (8190 - 15) + b" HTTP/1.1\r\n" + H + b"\r\n")
case("L02", "request line 8200 bytes", b"GET /" + b"a" * (8200 - 15) + b" HTTP/1.1\r\n" + H + b"\r\n")
case("L03", "request line 16k", b"GET /" + b"a" * 16000 + b" HTTP/1.1\r\n" + H + b"\r\n")
case("L04", "field 8190 bytes", req(b"GET /c HTTP/1.1", b"X-A: " + b"a" * (8190 - 5)))
case("L05", "field 9000 bytes", req(b"GET /c HTTP/1.1", b"X-A: " + b"a" * 9000))
case("L06", "100 fields", req(b"GET /c HTTP/1.1", *[b"X-%d: 1" % i for i in range(99)]))
case("L07", "101 fields", req(b"GET /c HTTP/1.1", *[b"X-%d: 1" % i for i in range(100)]))
case("L08", "head 40k in 8 fields of 5k", req(b"GET /c HTTP/1.1", *[b"X-%d: " % i + b"a" * 5000 for i in range(8)]))
case("L09", "cookie 12k", req(b"GET /c HTTP/1.1", b"Cookie: " + b"a" * 12000))
