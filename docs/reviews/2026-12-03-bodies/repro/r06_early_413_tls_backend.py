"""Finding 1 against a TLS backend: the backend answers 413 at once and resets (SO_LINGER 0)
while the client uploads.  Does the client get the 413?"""
import socket
import ssl
import struct
import tempfile
import threading
import time

import trustme
from h import proxy, recv_all
from support import cert_files

ca = trustme.CA()
cert, key = cert_files(ca, tempfile.mkdtemp(), "127.0.0.1")
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
listener = socket.create_server(("127.0.0.1", 0))
port = listener.getsockname()[1]


def serve(raw):
    try:
        s = ctx.wrap_socket(raw, server_side=True)
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(65536)
        time.sleep(WAIT)
        s.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large")
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.close()
    except OSError:
        pass


def accept():
    while True:
        try:
            raw, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=serve, args=(raw,), daemon=True).start()


threading.Thread(target=accept, daemon=True).start()
p = proxy([{"path": "/", "to": f"https://127.0.0.1:{port}/", "tls": {"verify": False}}], limits={"request_body": 0})
for WAIT in (0, 1):
    res = []
    for _ in range(5):
        c = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        c.sendall(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (1 << 30))
        stop = threading.Event()

        def pump(c=c, stop=stop):
            try:
                while not stop.is_set():
                    c.send(b"x" * 65536)
            except OSError:
                pass
        threading.Thread(target=pump, daemon=True).start()
        data, how = recv_all(c, 5)
        stop.set()
        c.close()
        res.append(data.split(b"\r\n", 1)[0].decode() or how)
    print(f"TLS backend, wait={WAIT}:", res)
print([x for x in p.error_text().splitlines() if "backend" in x][-2:])
p.stop()
listener.close()
