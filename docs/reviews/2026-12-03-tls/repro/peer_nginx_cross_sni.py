"""Peer check: does nginx resume a session issued under one SNI name on another server{}
block (other certificate; with and without ssl_verify_client)?  Shared ticket key file, so
only nginx's own guards stop it."""
import os
import signal
import ssl
import subprocess
import time

import h
from support import free_port, wait_for

ca = h.trustme.CA()
a = h.pair(ca, "na", "a.test")
b = h.pair(ca, "nb", "b.test")
c = h.pair(ca, "nc", "c.test")
good = h.pair(ca, "ngood", "client@test")
cas = h.write("nclients.pem", ca.cert_pem.bytes())
key = h.write("nticket.key", os.urandom(80))
port = free_port()
conf = f"""
daemon off; worker_processes 1; pid {h.TMP}/nginx.pid; error_log {h.TMP}/nginx.err info;
events {{}}
http {{
  access_log off; ssl_protocols TLSv1.2 TLSv1.3; ssl_session_ticket_key {key}; ssl_session_cache off;
  server {{ listen 127.0.0.1:{port} ssl default_server; server_name a.test;
           ssl_certificate {a[0]}; ssl_certificate_key {a[1]}; return 200 "a\\n"; }}
  server {{ listen 127.0.0.1:{port} ssl; server_name b.test;
           ssl_certificate {b[0]}; ssl_certificate_key {b[1]}; return 200 "b\\n"; }}
  server {{ listen 127.0.0.1:{port} ssl; server_name c.test;
           ssl_certificate {c[0]}; ssl_certificate_key {c[1]};
           ssl_client_certificate {cas}; ssl_verify_client on; return 200 "c\\n"; }}
}}"""
path = h.write("nginx.conf", conf.encode())
proc = subprocess.Popen(["nginx", "-c", path, "-p", h.TMP, "-e", f"{h.TMP}/nginx.err"])
try:
    wait_for(lambda: h.get(port, h.client_context(ca), "a.test")[0].startswith("HTTP"), 5)
    for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
        ctx = h.client_context(ca, version, good)
        st, reused, sess, data = h.get(port, ctx, "a.test")
        print(version.name, "a:", st, reused)
        print("  same name a->a:", h.get(port, ctx, "a.test", session=sess)[:2])
        st2 = h.get(port, ctx, "a.test")
        print("  other cert a->b:", h.get(port, ctx, "b.test", session=st2[2])[:2])
        st3 = h.get(port, ctx, "a.test")
        r = h.get(port, ctx, "c.test", session=st3[2])
        print("  verify_client a->c:", r[:2], r[3][-3:])
finally:
    proc.send_signal(signal.SIGQUIT)
    proc.wait(5)
