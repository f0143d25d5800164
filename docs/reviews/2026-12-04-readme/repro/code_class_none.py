"""README metrics table, mpm_requests_total: "`none`: ended before any status was sent".
(a) a client that closes mid-body, before any status: which code_class?  (b) a backend that
answers status 999 (a status was sent): which code_class?"""
import socket, sys, tempfile, threading, time, urllib.request
sys.path.insert(0, "/work/main/tests")
from proxyproc import Proxy
from support import free_port

lsock = socket.socket(); lsock.bind(("127.0.0.1", 0)); lsock.listen(16)
def serve():
    while True:
        try:
            c, _ = lsock.accept()
        except OSError:
            return
        def one(c=c):
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = c.recv(65536)
                if not chunk:
                    c.close(); return
                data += chunk
            if b"/s999" in data:
                c.sendall(b"HTTP/1.1 999 Whatever\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            else:
                time.sleep(3)      # /upload: never answers before the client leaves
            c.close()
        threading.Thread(target=one, daemon=True).start()
threading.Thread(target=serve, daemon=True).start()
url = f"http://127.0.0.1:{lsock.getsockname()[1]}"

admin = free_port()
d = tempfile.mkdtemp(prefix="rev-readme-none-")
p = Proxy(d, [{"path": "/", "to": url + "/"}], workers=1, admin={"listen": f"127.0.0.1:{admin}"})
def metrics():
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
    return [l for l in text.splitlines() if l.startswith("mpm_requests_total") and 'route="/"' in l and not l.endswith(" 0.0")]
try:
    p.start()
    s = p.connect()
    s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100)
    time.sleep(0.3); s.close(); time.sleep(1)
    print("(a) client gone mid-body:", metrics(), [l for l in p.access_lines() if "/upload" in l])
    s = p.connect(); s.sendall(b"GET /s999 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    s.settimeout(5); print("(b) client got:", s.recv(65536).split(b"\r\n")[0]); s.close(); time.sleep(0.5)
    print("(b) after a 999:", metrics(), [l for l in p.access_lines() if "/s999" in l])
finally:
    p.stop(); lsock.close()
