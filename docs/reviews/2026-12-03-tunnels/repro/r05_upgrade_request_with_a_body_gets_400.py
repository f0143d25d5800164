"""r05: h2c upgrade requests.  'Upgrade: h2c' on an ANY route tunnels (HTTP2-Settings is not forwarded, as in
Apache and HAProxy); a POST with a body and 'Upgrade: h2c' (what curl --http2 -d sends) gets 400 on any route."""
import os, socket, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from h import *
from rawbackend import respond
def behaviour(conn):
    head = conn.read_head()
    conn.backend.results[head.target] = head.raw
    if head.get("upgrade"):
        conn.send(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
        time.sleep(0.2)
    else:
        conn.send(respond(200, b"plain"))
b = RawBackend(behaviour, timeout=5)
with proxy([{"path": "/any/", "to": b.url + "/any/", "upgrade": "ANY"}, {"path": "/ws/", "to": b.ws_url + "/ws/"}], workers=1) as p:
    for path in ("/any/x", "/ws/y"):
        s = socket.create_connection(("127.0.0.1", p.port)); s.settimeout(3)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n".encode())
        head, buf = read_head(s)
        print(path, status_of(head), "backend got:", b.results.get(path))
        s.close()
    s = socket.create_connection(("127.0.0.1", p.port)); s.settimeout(3)
    s.sendall(b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n")
    print("CONNECT:", s.recv(200)[:60])
    s = socket.create_connection(("127.0.0.1", p.port)); s.settimeout(3)
    s.sendall(b"POST /any/p HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\nContent-Length: 3\r\n\r\nabc")
    print("POST h2c upgrade with a body:", s.recv(300)[:80])
b.close()
