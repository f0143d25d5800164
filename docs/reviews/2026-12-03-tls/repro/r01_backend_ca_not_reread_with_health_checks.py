"""r01: a balancer's https member with `health:` and `tls: {ca: ca.pem}`.  The backend moves
to a certificate from a new CA, the operator writes the new CA into ca.pem and reloads.
README: "Certificates are re-read on reload".  Is ca.pem re-read by the new generation?

The same with no `health:` on the balancer, for comparison."""
import socket
import ssl
import sys
import time

import h
sys.path.insert(0, h.os.path.join(h.ROOT, "tests"))
from test_tls import TlsBackend  # noqa: E402


def ask(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        return data.split(b"\r\n", 1)[0].decode()


for health in (True, False):
    old_ca, new_ca = h.trustme.CA(), h.trustme.CA()
    backend = TlsBackend(h.pair(old_ca, f"be{health}", "127.0.0.1"))
    ca_file = h.write(f"backend-ca{health}.pem", old_ca.cert_pem.bytes())
    cluster = {"members": [{"url": f"https://127.0.0.1:{backend.port}", "tls": {"ca": ca_file}}]}
    if health:
        cluster["health"] = {"method": "GET", "path": "/", "interval": 0.2, "passes": 1, "fails": 1, "timeout": 1}
    p = h.proxy(None, [{"path": "/", "to": "balancer://c/"}], balancers={"c": cluster})
    time.sleep(0.5)              # a few health intervals
    before = ask(p.port)
    # the backend's certificate now comes from the new CA, and ca.pem says so
    new_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    new_context.load_cert_chain(*h.pair(new_ca, f"be2{health}", "127.0.0.1"))
    backend.context = new_context
    h.write(f"backend-ca{health}.pem", new_ca.cert_pem.bytes())
    print(p.reload().stdout.strip())
    p.wait_ready(generation=2)
    time.sleep(1.0)              # several health intervals
    after = [ask(p.port) for _ in range(3)]
    print(f"health checks: {health}: before {before!r}; after the reload {after}")
    log = p.error_text()
    print("   ", [line[-110:] for line in log.splitlines() if "verify" in line or "down" in line][-3:])
