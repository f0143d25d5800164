"""c05: the ticket lifetime hint the listeners send (OpenSSL default 7200 s)."""
import subprocess, ssl
import h
ca = h.trustme.CA()
site = h.pair(ca, "site", "localhost")
be = h.backend()
p = h.proxy([{"tls": {"cert": site[0], "key": site[1]}}], [{"path": "/", "to": be.url + "/"}])
for v in ("-tls1_3", "-tls1_2"):
    out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{p.port}", v, "-servername", "localhost",
                          "-ign_eof"], input=b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                         capture_output=True, timeout=10).stdout.decode(errors="replace")
    print(v, [l.strip() for l in out.splitlines() if "lifetime" in l or "Timeout" in l][:3])
