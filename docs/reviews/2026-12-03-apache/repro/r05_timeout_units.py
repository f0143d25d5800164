"""ProxyTimeout 500ms / ProxyPass ... timeout=500ms: httpd reads the number alone (atoi: 500
seconds); the import made it 0.5 s.  A backend answering in 1.5 s: 200 through httpd."""
import socket
import threading
import time

from h import Apache, ask, free_port, translate

srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(16)
bport = srv.getsockname()[1]


def serve():
    while True:
        try:
            c, _ = srv.accept()
        except OSError:
            return

        def one(c=c):
            c.recv(65536)
            time.sleep(1.5)
            try:
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            except OSError:
                pass
            c.close()
        threading.Thread(target=one, daemon=True).start()


threading.Thread(target=serve, daemon=True).start()
for line in [f"ProxyTimeout 500ms\nProxyPass / http://127.0.0.1:{bport}/", f"ProxyPass / http://127.0.0.1:{bport}/ timeout=500ms"]:
    port = free_port()
    d, conf, r, g = translate(f"Listen 127.0.0.1:{port}\n{line}\n")
    ap = Apache(conf, [port]).start()
    try:
        t = time.time()
        status = ask(port, "/x")
        print(f"{line.splitlines()[0]!r}: httpd {status} after {time.time() - t:.1f} s; import: "
              f"timeouts.proxy={g['timeouts']['proxy']} route timeout={g['routes'][0].get('timeout')}")
    finally:
        ap.stop()
srv.close()
