"""A POST that asks for an Upgrade (no body) is sent to a second member after the first one
read it and closed without answering: `failover._may_retry` and `fresh_connection` treat any
upgrade handshake as safe to repeat, whatever its method.  The first member may have acted on
the POST; RFC 9112 §9.3.1: "A proxy MUST NOT automatically retry non-idempotent requests"
(nginx: never, without `proxy_next_upstream non_idempotent`)."""
from h import RawMember, raw, start_proxy

cut = RawMember(lambda s, head: None)                          # reads the head, closes, no answer
ok = RawMember(lambda s, head: s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"))
p = start_proxy([{"path": "/", "to": "balancer://app/"}], workers=1,
                balancers={"app": {"members": [{"url": cut.url}, {"url": ok.url}]}})
for method in (b"GET", b"POST"):
    for _ in range(2):                 # byrequests: one of the two goes to `cut` first
        answer = raw(p, method + b" /x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        print(method.decode(), "upgrade answered:", answer.split(b"\r\n", 1)[0])
    print("   heads received: cut=%d ok=%d" % (len(cut.heads), len(ok.heads)))
    cut.heads.clear(); ok.heads.clear()
