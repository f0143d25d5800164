"""Peer check: nginx with ssl_session_ticket_key (so tickets outlive a reload) and
ssl_verify_client: the client CA file's contents are replaced and nginx reloaded (SIGHUP).
Does a session authenticated under the removed CA still resume?"""
import os
import signal
import ssl
import subprocess

import h
from support import free_port, wait_for

ca, ca2 = h.trustme.CA(), h.trustme.CA()
site = h.pair(ca, "nsite", "a.test")
good = h.pair(ca, "ngood", "client@test")
cas = h.write("nclients.pem", ca.cert_pem.bytes())
key = h.write("nticket.key", os.urandom(80))
port = free_port()
conf = f"""
daemon off; worker_processes 1; pid {h.TMP}/nginx.pid; error_log {h.TMP}/nginx.err info;
events {{}}
http {{
  access_log off; ssl_protocols TLSv1.2 TLSv1.3; ssl_session_ticket_key {key}; ssl_session_cache off;
  server {{ listen 127.0.0.1:{port} ssl; server_name a.test;
           ssl_certificate {site[0]}; ssl_certificate_key {site[1]};
           ssl_client_certificate {cas}; ssl_verify_client on; return 200 "a\\n"; }}
}}"""
path = h.write("nginx.conf", conf.encode())
proc = subprocess.Popen(["nginx", "-c", path, "-p", h.TMP, "-e", f"{h.TMP}/nginx.err"])
try:
    contexts = {v: h.client_context(ca, v, good) for v in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2)}
    wait_for(lambda: h.get(port, contexts[ssl.TLSVersion.TLSv1_2], "a.test")[0].startswith("HTTP"), 5)
    sessions = {v: h.get(port, c, "a.test")[2] for v, c in contexts.items()}
    print("before: resumes:", {v.name: h.get(port, c, "a.test", session=h.get(port, c, "a.test")[2])[1]
                               for v, c in contexts.items()})
    h.write("nclients.pem", ca2.cert_pem.bytes())
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: h.get(port, contexts[ssl.TLSVersion.TLSv1_2], "a.test")[0] != "HTTP/1.1 200 OK", 5)
    for v, c in contexts.items():
        print(v.name, "after the CA was replaced: fresh:", h.get(port, c, "a.test")[0][:50],
              "| resumed:", h.get(port, c, "a.test", session=sessions[v])[:2])
finally:
    proc.send_signal(signal.SIGQUIT)
    proc.wait(5)
