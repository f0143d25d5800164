"""r02: a listener with client_ca (sessions from a listener without it do not resume there:
the control).  Then the client CA file is rewritten in place with another CA and the server
reloaded: a fresh handshake with the old client certificate fails, a resumed one did not."""
import ssl, shutil
import h
ca, ca2 = h.trustme.CA(), h.trustme.CA()
site = h.pair(ca, "site", "localhost", "a.test")
clients_ca = h.write("clients.pem", ca.cert_pem.bytes())
good = h.pair(ca, "good", "client@test")
be = h.backend()
p = h.proxy([{"tls": {"cert": site[0], "key": site[1]}}], [{"path": "/", "to": be.url + "/"}])

from support import free_port
port_b = free_port()
p.config["listen"].append({"address": f"127.0.0.1:{port_b}", "tls": {"cert": site[0], "key": site[1], "client_ca": clients_ca}})
p.write_config(); print(p.reload().stdout.strip()); p.wait_ready(generation=2)
for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
    nocert = h.client_context(ca, version)
    st, _, sess, _ = h.get(p.port, nocert, "a.test")
    print(version.name, "listener A->B (client_ca) without cert:", h.get(port_b, nocert, "a.test", session=sess)[:2])
# CA rotation at reload, same path
sessions = {}
for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
    ctx = h.client_context(ca, version, good)
    sessions[version] = (ctx, h.get(port_b, ctx, "a.test")[2])
h.write("clients.pem", ca2.cert_pem.bytes())
print(p.reload().stdout.strip()); p.wait_ready(generation=3)
for version, (ctx, sess) in sessions.items():
    print(version.name, "after CA replaced: fresh:", h.get(port_b, ctx, "a.test")[:2][0][:60], "| resumed:", h.get(port_b, ctx, "a.test", session=sess)[:2])
