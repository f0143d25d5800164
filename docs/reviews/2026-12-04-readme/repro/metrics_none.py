"""README metrics table: code_class="none" (ended before any status was sent), the
mpm_keepalive_connections_handed_over_total family (side sent/adopted) after a reload with
an idle keep-alive connection open."""
import socket, sys, tempfile, time, urllib.request
sys.path.insert(0, "/work/main/tests")
from backends import HttpBackend
from proxyproc import Proxy
from support import free_port

backend = HttpBackend(lambda req, body: (time.sleep(2) if req["target"].startswith("/slow") else None)
                      or (200, [("Content-Type", "text/plain")], b"hello"))
admin = free_port()
d = tempfile.mkdtemp(prefix="rev-readme-metrics-")
p = Proxy(d, [{"path": "/", "to": backend.url + "/"}], workers=1, admin={"listen": f"127.0.0.1:{admin}"})

def metrics(*names):
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
    return [l for l in text.splitlines() if any(l.startswith(n) for n in names)]

try:
    p.start()
    s = p.connect(); s.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"); time.sleep(0.3); s.close()
    time.sleep(2.5)
    print("\n".join(metrics("mpm_requests_total")))
    print([l for l in p.access_lines() if "/slow" in l])
    k = p.connect(); k.sendall(b"GET /ka HTTP/1.1\r\nHost: x\r\n\r\n"); print(k.recv(65536).split(b"\r\n")[0])
    r = p.reload(); print("reload rc", r.returncode, r.stdout.strip(), r.stderr.strip())
    time.sleep(1.5)
    k.sendall(b"GET /ka2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); print("after reload:", k.recv(65536).split(b"\r\n")[0])
    print("\n".join(metrics("mpm_keepalive_connections_handed_over")))
finally:
    p.stop(); backend.close()
