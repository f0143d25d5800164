import os
import sys, time, socket
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from _h import *
from wsutil import upgrade_request, switch_response
def handler(conn):
    while True:
        head = conn.read_head()
        if head is None: return
        if head.target == "/slow":
            time.sleep(2); conn.send(respond(200, b"late")); continue
        if head.target.startswith("/ws"):
            conn.send(switch_response("websocket", head.raw)); conn.send(b"hello")
            from rawbackend import echo; echo(conn); return
        if head.target == "/upload":
            conn.read_body(head); conn.send(respond(200, b"got")); continue
        conn.read_body(head)
        conn.send(respond(200, b"y"*100))
be = RawBackend(handler)
p = proxy([{"path": "/", "to": be.url, "timeout": 1}], workers=1, timeouts={"client_header": 1, "keepalive": 1, "proxy": 1, "connect": 1})
# 408: partial head
s = p.connect(); s.sendall(b"GET /partial HTTP/1.1\r\nHost: x\r\n"); print("408?", s.recv(100)[:30]); s.close()
# silent connection
s = p.connect(); print("silent:", s.recv(100)[:30]); s.close()
# keep-alive idle after one request
s = p.connect(); s.sendall(b"GET /ka HTTP/1.1\r\nHost: x\r\n\r\n"); time.sleep(0.1); s.recv(1000); print("ka-idle close:", s.recv(100)); s.close()
# body stall
s = p.connect(); s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc"); print("stall:", s.recv(100)[:30]); s.close()
# client leaves before the response (499)
s = p.connect(); s.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"); time.sleep(0.3); s.close(); time.sleep(2.2)
# client half-closes (FIN) after sending a request, waits for the response
s = p.connect(); s.sendall(b"GET /fin HTTP/1.1\r\nHost: x\r\n\r\n"); s.shutdown(socket.SHUT_WR); print("fin:", s.recv(1000)[:20]); s.close()
# websocket, client closes
s = p.connect(); s.sendall(upgrade_request("/ws1")); time.sleep(0.3); print("ws:", s.recv(1000)[:20]); s.sendall(b"abcdef"); time.sleep(0.2); s.recv(100); s.close()
time.sleep(2)
for l in p.access_lines(): print(" ", l)
print(p.error_text()[-1200:])
