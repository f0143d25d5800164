"""c03 (found sound): client certificates on a listener with client_ca (none, another CA,
expired, good; TLS 1.3 and 1.2), what the backend is told, and a session issued under one
SNI name resumed under another name of the same listener (other certificate, same
client-certificate policy: resumes, as nginx does)."""
import ssl
import h
ca, other = h.trustme.CA(), h.trustme.CA()
site = h.pair(ca, "site", "localhost", "a.test")
b = h.pair(ca, "b", "b.test")
clients_ca = h.write("clients.pem", ca.cert_pem.bytes())
good = h.pair(ca, "good", "client@test")
foreign = h.pair(other, "foreign", "client@test")
old = h.expired(ca, "old", "client@test")
be = h.backend()
p = h.proxy([{"tls": {"cert": site[0], "key": site[1], "sni": {"b.test": {"cert": b[0], "key": b[1]}},
                      "client_ca": clients_ca}}], [{"path": "/", "to": be.url + "/"}])
for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
    print(version.name)
    for name, cert in (("none", None), ("good", good), ("foreign", foreign), ("expired", old)):
        print(" ", name, h.get(p.port, h.client_context(ca, version, cert), "a.test")[:2])
    ctx = h.client_context(ca, version, good)
    st, reused, sess, _ = h.get(p.port, ctx, "a.test")
    print("  cross-sni resume a->b:", h.get(p.port, ctx, "b.test", session=sess)[:2])
print(be.requests[-1])
