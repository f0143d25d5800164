"""A member's `route` is not validated: it is written as is into the Set-Cookie line a sticky
`insert` balancer adds, so a route with a CR LF splits the response head (a header of the
operator's choosing, or a second response), and one with `;` or a space makes a cookie the
browser reads differently (`Domain=`), while `mpm -t` says the configuration is fine."""
from h import Member, get, start_proxy

a, b = Member("a"), Member("b")
for route in ("a\r\nX-Injected: yes", "a; Domain=evil.example", "a b"):
    sec = {"app": {"sticky": {"cookie": "SRV", "insert": True},
                   "members": [{"url": a.url, "route": route}, {"url": b.url, "route": "b"}]}}
    try:
        p = start_proxy([{"path": "/", "to": "balancer://app/"}], workers=1, balancers=sec)
    except AssertionError as exc:        # the master refused the file (after the fix)
        print("route %r: refused: %s" % (route, str(exc).strip().splitlines()[-1][-160:]))
        continue
    heads = [get(p, "/x")[1] for _ in range(4)]
    print("route %r: accepted; response heads from member a:" % route)
    for h in {h for h in heads if b"SRV=a" in h}:
        print("   ", h)
    p.stop()
