"""c04: TLS handshake counts in mpmctl status and /metrics before and after a reload."""
import ssl, time, urllib.request
import h
from support import free_port, wait_for
ca = h.trustme.CA()
site = h.pair(ca, "site", "localhost")
be = h.backend()
admin = free_port()
p = h.proxy([{"tls": {"cert": site[0], "key": site[1]}}], [{"path": "/", "to": be.url + "/"}], workers=2,
            admin={"listen": f"127.0.0.1:{admin}", "allow": ["127.0.0.0/8"]})
def show(label):
    time.sleep(1.2)
    s = p.status()
    m = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics").read().decode()
    print(label, "totals:", {k: s["totals"].get(k) for k in ("tls_full", "tls_resumed")},
          [(w["generation"], w["tls_full"], w["tls_resumed"]) for w in s["workers"]],
          [l for l in m.splitlines() if l.startswith("mpm_tls_handshakes_total")])
ctx = h.client_context(ca, ssl.TLSVersion.TLSv1_3)
sess = None
for i in range(4):
    st, r, s2, _ = h.get(p.port, ctx, "localhost", session=sess); sess = sess or s2
show("before reload (1 full, 3 resumed):")
p.reload(); p.wait_ready(generation=2)
show("right after reload:")
wait_for(lambda: len(p.status()["workers"]) == 2, 10)
show("old gen gone:")
for i in range(2):
    h.get(p.port, ctx, "localhost", session=sess)
show("+2 resumed:")
print(p.mpmctl("status").stdout)
