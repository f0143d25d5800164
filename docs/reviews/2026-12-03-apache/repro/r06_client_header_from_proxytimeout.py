"""Without mod_reqtimeout httpd bounds a request head by Timeout; the import used ProxyTimeout."""
import socket
import time

from h import Apache, free_port, translate

port = free_port()
d, conf, r, g = translate(f"Listen 127.0.0.1:{port}\nTimeout 2\nProxyTimeout 30\nProxyPass / http://127.0.0.1:1/\n")
print("import: timeouts =", g["timeouts"])
ap = Apache(conf, [port]).start()
try:
    s = socket.create_connection(("127.0.0.1", port), timeout=40)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    t = time.time()
    data = s.recv(1000)
    print(f"httpd answered a stalled head after {time.time() - t:.1f} s: {data[:30]!r}")
    s.close()
finally:
    ap.stop()
