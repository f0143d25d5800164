"""Peer check: httpd with two name-based TLS virtual hosts on one port, the second with
SSLVerifyClient require.  A client without a certificate: SNI of the open one + Host of the
guarded one; SNI of the guarded one; and the same with a client certificate."""
import os
import ssl

import h
from apache_util import Apache, preamble
from support import free_port

ca = h.trustme.CA()
www, admin = h.pair(ca, "www", "www.example.test"), h.pair(ca, "admin", "admin.example.test")
good = h.pair(ca, "good", "client@test")
clients = h.write("clients.pem", ca.cert_pem.bytes())
be = h.backend(lambda req, body: (200, [], b"backend " + req["target"].encode()))
port = free_port()
directory = os.path.join(h.TMP, "httpd")
os.makedirs(directory)
os.chmod(h.TMP, 0o755)
text = preamble(directory, ("mpm_event", "authz_core", "proxy", "proxy_http", "ssl", "socache_shmcb")) + f"""
Listen 127.0.0.1:{port}
<VirtualHost 127.0.0.1:{port}>
    ServerName www.example.test
    SSLEngine on
    SSLCertificateFile {www[0]}
    SSLCertificateKeyFile {www[1]}
    ProxyPass "/" "{be.url}/www/"
</VirtualHost>
<VirtualHost 127.0.0.1:{port}>
    ServerName admin.example.test
    SSLEngine on
    SSLCertificateFile {admin[0]}
    SSLCertificateKeyFile {admin[1]}
    SSLVerifyClient require
    SSLCACertificateFile {clients}
    ProxyPass "/" "{be.url}/admin/"
</VirtualHost>
"""
conf = h.write("httpd/httpd.conf", text.encode())
apache = Apache(conf, [port]).start()
try:
    for label, cert in (("no client certificate", None), ("with a client certificate", good)):
        context = h.client_context(ca, cert=cert)
        print(label)
        print("  SNI www, Host www:  ", h.get(port, context, "www.example.test")[0])
        print("  SNI www, Host admin:", h.get(port, context, "www.example.test", host="admin.example.test")[0])
        print("  SNI admin:          ", h.get(port, context, "admin.example.test")[0][:90])
    print([line[-140:] for line in apache.error_text().splitlines() if "AH02032" in line][:1])
finally:
    apache.stop()
