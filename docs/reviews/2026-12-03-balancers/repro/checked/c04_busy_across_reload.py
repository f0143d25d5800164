"""Found sound: 4 WebSockets through a bybusyness balancer across a reload: busy 2+2 before and
after, messages still echo, busy 0 (not negative) once closed, traffic counted."""
import sys, time, json
sys.path.insert(0, __import__("os").path.join(__import__("os").path.dirname(__import__("os").path.abspath(__file__)), ".."))
from h import Member, members_section, start_proxy
from balancer_util import ws_open, ws_echo, ws_close
a, b = Member("a"), Member("b")
p = start_proxy([{"path": "/", "to": "balancer://app/"}], workers=2,
                balancers={"app": members_section([a, b], method="bybusyness")})
def busy():
    j = json.loads(p.mpmctl("balancer", "--json").stdout)
    return [(m["route"], m["busy"], m["bytes"]) for m in j["balancers"][0]["members"]]
socks = [ws_open(p, "/ws") for _ in range(4)]
print("open 4:", busy())
r = p.reload(); print("reload rc", r.returncode)
time.sleep(3)
print("after reload:", busy())
for s, head, rest in socks:
    try: print(ws_echo(s, rest, b"hi"), end=" ")
    except Exception as e: print("echo failed", e, end=" ")
print()
for s, head, rest in socks:
    try: ws_close(s)
    except Exception: pass
time.sleep(2)
print("closed:", busy())
