"""r05: a reload that adds (or removes) a trusted proxy does not apply to the keep-alive
connections the old worker hands over: the successor takes the old worker's verdict with the
socket.  A balancer added to `trusted_proxies` keeps counting as one client on its pooled
connections (429 for everyone behind it), and one removed keeps having its X-Forwarded-For
believed, for as long as it keeps those connections (each reload hands them on again)."""
import time

from h import Backend, ask, connect, start_proxy

backend = Backend()


def run(trusted_before, trusted_after):
    limits = {"per_client": {"requests": {"rate": 1, "burst": 2}}}
    if trusted_before:
        limits["trusted_proxies"] = trusted_before
    p = start_proxy([{"path": "/", "to": backend.url + "/"}], workers=1, limits=limits)
    lb = connect(p.port, "127.0.0.9")             # the balancer's pooled keep-alive connection
    assert ask(lb, b"GET /warm HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 198.51.100.1\r\n\r\n") == 200
    time.sleep(1.5)          # the balancer's bucket refills
    p.config["limits"] = {"per_client": limits["per_client"], "trusted_proxies": trusted_after}
    p.write_config()
    assert p.reload().returncode == 0
    p.wait_ready(2)
    deadline = time.time() + 10
    while p.status()["old_generation_workers"] and time.time() < deadline:
        time.sleep(0.1)
    statuses = []
    for i in range(4):       # four requests of four clients, through the balancer (as the spoofer)
        statuses.append(ask(lb, b"GET /c%d HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 203.0.113.%d\r\n\r\n" % (i, i + 1)))
    fresh = connect(p.port, "127.0.0.9")
    fresh_statuses = []
    for i in range(4):
        fresh_statuses.append(ask(fresh, b"GET /f%d HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 192.0.2.%d\r\n\r\n" % (i, i + 1)))
    print(f"trusted {trusted_before} -> {trusted_after}: moved connection {statuses}, "
          f"fresh connection {fresh_statuses}")
    lb.close()
    fresh.close()
    p.stop()


run([], ["127.0.0.9"])          # expected: 200 x4 on both (four distinct clients)
run(["127.0.0.9"], [])          # expected: 200 200 429 429 on both (one client: the peer)
