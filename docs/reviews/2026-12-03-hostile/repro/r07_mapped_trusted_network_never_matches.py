"""r07: `trusted_proxies` written in IPv4-mapped IPv6 form ("::ffff:127.0.0.9", as some
tools print dual-stack peers) never matches: the balancer's X-Forwarded-For is ignored."""
from h import Backend, ask, connect, start_proxy

backend = Backend()
for trusted in ("127.0.0.9", "::ffff:127.0.0.9", "::ffff:127.0.0.0/104"):
    p = start_proxy([{"path": "/", "to": backend.url + "/"}], workers=1,
                    limits={"per_client": {"requests": {"rate": 1, "burst": 1}}, "trusted_proxies": [trusted]})
    lb = connect(p.port, "127.0.0.9")
    statuses = [ask(lb, b"GET / HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 203.0.113.%d\r\n\r\n" % i) for i in range(3)]
    print(f"trusted_proxies [{trusted!r}]: three clients through 127.0.0.9 -> {statuses} (expected 200 x3)")
    lb.close()
    p.stop()
