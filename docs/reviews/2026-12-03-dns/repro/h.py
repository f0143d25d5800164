"""Shared harness for the repros: a real mpm proxy (tests/proxyproc.Proxy), real members
(tests/balancer_util.Member) and a real DNS server (tests/test_dns_hostile.HostileDns, UDP and
TCP on a free loopback port), or `CraftedDns`, the same server answering what `craft` builds.
Every proxy is stopped at exit by pid (Proxy.stop)."""
import atexit, collections, json, os, socket, sys, tempfile, time
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)
import dns.flags, dns.message, dns.rdata, dns.rdataclass, dns.rdatatype, dns.rrset  # noqa: E402
from balancer_util import KeepAlive, Member  # noqa: E402,F401
from proxyproc import Proxy  # noqa: E402
from test_dns_hostile import HostileDns  # noqa: E402


class CraftedDns(HostileDns):
    """HostileDns whose answers `craft(query, name, rdtype)` builds: a list of
    (owner, ttl, TYPE, rdata text) for the answer section, or None for HostileDns's own."""

    craft = None

    def _reply(self, wire, limit):
        query = dns.message.from_wire(wire)
        q = query.question[0]
        name, rdtype = q.name.to_text(omit_final_dot=True).lower(), dns.rdatatype.to_text(q.rdtype)
        records = self.craft(query, name, rdtype) if self.craft else None
        if records is None:
            return super()._reply(wire, limit)
        self.asked.append((name, rdtype))
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        for owner, ttl, rtype, text in records:
            rrset = response.find_rrset(response.answer, dns.name.from_text(owner), dns.rdataclass.IN,
                                        dns.rdatatype.from_text(rtype), create=True)
            rrset.add(dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rtype), text), ttl)
        return response.to_wire()


def start_proxy(routes, workers=1, **sections):
    p = Proxy(tempfile.mkdtemp(prefix="dnsrepro-"), routes, workers=workers, **sections)
    p.start()
    atexit.register(p.stop)
    return p


def members(p, balancer="app"):
    r = p.mpmctl("balancer", "--json")
    return {m["url"]: m for b in json.loads(r.stdout)["balancers"] if b["name"] == balancer for m in b["members"]}


def served(p, n=6):
    counts = collections.Counter()
    for _ in range(n):
        c = KeepAlive(p, timeout=3)
        try:
            status, _, body = c.get("/")
            counts[body.decode() if status == 200 else status] += 1
        except (OSError, ConnectionError) as exc:
            counts[f"failed: {exc!r}"] += 1
        finally:
            c.close()
    return counts


def wait(predicate, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return False
