"""Found sound: a member that dies mid-upload (RST), mid-response, mid-101: 502 / truncated
response then close / 502; busy back to 0 on every member, the worker idle afterwards."""
import sys, time, socket, json, threading
sys.path.insert(0, __import__("os").path.join(__import__("os").path.dirname(__import__("os").path.abspath(__file__)), ".."))
from h import RawMember, raw, start_proxy
def mid_upload(s, head):
    s.recv(1000); s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
def mid_response(s, head):
    s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 5000)
def mid_upgrade(s, head):
    s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConn")
ms = {n: RawMember(f) for n, f in (("up", mid_upload), ("resp", mid_response), ("upg", mid_upgrade))}
routes = [{"path": f"/{n}/", "to": f"balancer://{n}/"} for n in ms]
p = start_proxy(routes, workers=1, balancers={n: {"members": [{"url": m.url}], "method": "bybusyness"} for n, m in ms.items()})
def up():
    s = socket.create_connection(("127.0.0.1", p.port)); s.settimeout(5)
    s.sendall(b"POST /up/x HTTP/1.1\r\nHost: a\r\nContent-Length: 10000000\r\n\r\n")
    try:
        for _ in range(200): s.sendall(b"y" * 50000)
    except OSError as e: print("upload send:", e)
    try: print("upload answer:", s.recv(200).split(b"\r\n")[0])
    except OSError as e: print("upload recv", e)
    s.close()
up()
print("resp:", len(raw(p, b"GET /resp/x HTTP/1.1\r\nHost: a\r\n\r\n", timeout=3)))
print("upg:", raw(p, b"GET /upg/x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", timeout=3)[:80])
time.sleep(1)
j = json.loads(p.mpmctl("balancer", "--json").stdout)
for b in j["balancers"]:
    print(b["name"], [(m["busy"], m["requests"], m["failures"], m["state"]) for m in b["members"]])
import psutil
for w in p.worker_pids(): print("worker cpu", psutil.Process(w).cpu_percent(0.5))
