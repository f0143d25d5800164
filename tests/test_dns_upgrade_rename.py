"""`mpmctl upgrade` to a file whose `discover.dns` asks another name (review 2026-12-03-leftovers
#2; a reload got the same fix in review 2026-12-03-dns #2).

The next master did not take the members the one it replaces had found, since they came from
another question: its balancer was empty until the new name answered, and every request in
that window got 503.  Now they come along as departed members, as across a reload: they serve
until the answer, and the answer that names them again brings them back from draining.

Real processes: a real master (then the one `mpmctl upgrade` starts), a real member, dnsmasq
as the resolver (balancer_util.DnsServer) behind a first resolver that never answers, so the
new name takes the new master half a second."""

from __future__ import annotations

import collections
import os
import socket
import threading

import psutil
from support import wait_for
from test_balancer_dns import ROUTES, discovering, listing, served


def test_an_upgrade_that_renames_discover_dns_keeps_serving_until_the_new_name_answers(
        proxy_factory, dns_server, fleet):
    m = fleet[0]
    dns_server.records({"old.test": [m.host], "new.test": [m.host]})
    proxy = proxy_factory(ROUTES, workers=1, balancers=discovering(dns_server, dns="old.test", type="A",
                                                                   port=m.port, interval=5))
    wait_for(lambda: served(proxy, 2) == {m.name: 2}, 5, 0.05, "the member of old.test")
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)        # a resolver that never answers
    dead.bind(("127.0.0.1", 0))
    log = f"{dns_server.dir}/dnsmasq.log"
    proxy.config["balancers"] = discovering(dns_server, dns="new.test", type="A", port=m.port, interval=5,
                                            resolvers=[f"127.0.0.1:{dead.getsockname()[1]}", dns_server.resolver])
    proxy.write_config()
    answers, stop = collections.Counter(), threading.Event()
    client = threading.Thread(target=lambda: [answers.update(served(proxy, 1, 1)) for _ in iter(stop.is_set, True)])
    new_master = 0
    try:
        client.start()
        result = proxy.mpmctl("upgrade", timeout=60)
        assert result.returncode == 0, result.stderr + result.stdout
        new_master = int(open(os.path.join(proxy.dir, "run", "mpm.pid")).read())
        assert proxy.proc.wait(10) == 0 and new_master != proxy.proc.pid
        wait_for(lambda: "query[A] new.test" in open(log).read(), 5, 0.05, "the new name asked")
        url = m.url
        wait_for(lambda: {x["url"]: x["status"] for x in listing(proxy)["members"]} == {url: "enabled"}, 5, 0.05,
                 "the member back from draining")
        stop.set()
        client.join(10)
        assert set(answers) == {m.name} and answers[m.name] >= 5, answers    # before: {'m2': ..., 503: ...}
        assert "discover now asks new.test (A) instead of old.test (A)" in proxy.error_text()
    finally:
        stop.set()
        dead.close()
        if new_master:
            proxy.mpmctl("stop")
            wait_for(lambda: not psutil.pid_exists(new_master), 20, 0.1, "the new master to stop")
