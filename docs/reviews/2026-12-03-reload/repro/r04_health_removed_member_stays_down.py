"""Finding 3: a member that health checks took down stays down for good after a reload that
removes the balancer's `health:` block: the new member table copies its health (DOWN) by
URL, and with no checks any more nothing ever brings it back.  Every request gets 503 until
a restart; a fresh start with the same file serves at once.  The same for a member found in
DNS (mpm/slots.carry), shown here with a `discover.dns` IP address.

PASS when, after the reload, the balancer serves as a fresh start with the same file does."""

import sys
import time

import h
from backends import HttpBackend


def case(discover: bool) -> bool:
    b = HttpBackend(lambda req, body: ((500 if req["target"] == "/health" else 200), [], b"x"))
    h._started.append(b)
    health = {"method": "GET", "path": "/health", "interval": 0.5, "fails": 1, "passes": 1, "timeout": 1}
    bal = {"discover": {"dns": "127.0.0.1", "type": "A", "port": b.port}} if discover else \
        {"members": [{"url": b.url}]}
    p = h.proxy([{"path": "/", "to": "balancer://app/"}], balancers={"app": {**bal, "health": health}})
    time.sleep(2)
    print(f"  /health fails: GET -> {h.get(p.url('/x'))[0]}")
    del p.config["balancers"]["app"]["health"]
    p.write_config()
    r = p.reload()
    print(f"  reload without health: exit {r.returncode} {r.stdout.strip()}")
    time.sleep(2)
    after = [h.get(p.url("/x"))[0] for _ in range(3)]
    print(f"  2 s after the reload: {after}")
    p.stop()
    q = h.proxy([{"path": "/", "to": "balancer://app/"}], balancers=p.config["balancers"])
    fresh = [h.get(q.url("/x"))[0] for _ in range(3)]
    print(f"  fresh start with the same file: {fresh}")
    q.stop()
    return after == fresh


def main() -> int:
    print("static member:")
    a = case(False)
    print("member from DNS (an address as discover.dns):")
    b = case(True)
    ok = a and b
    h.result(ok, "removing `health:` by reload serves as a fresh start with the same file does")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
