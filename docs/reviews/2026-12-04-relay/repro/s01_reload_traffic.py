"""Found-sound check: a native tunnel across two `mpmctl reload`s (hand-over to gen 2, then 3): traffic, half-close, counts."""
import os, socket, sys, tempfile, time
sys.path[:0] = ["/tmp/rev-relay", "/tmp/rev-relay/tests"]
from proxyproc import Proxy
from rawbackend import RawBackend
from wsutil import switch_response, upgrade_request
def echo(conn):
    head = conn.read_head(); conn.send(switch_response("websocket", head.raw))
    while True:
        d = conn.sock.recv(65536)
        if not d: return
        conn.sock.sendall(d)
backend = RawBackend(echo)
proxy = Proxy(tempfile.mkdtemp(prefix="rt-"), [{"path": "/", "to": backend.url + "/", "timeout": 30}], workers=1, environ={"MPM_NATIVE_RELAY": "1"})
proxy.start()
try:
    c = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    c.sendall(upgrade_request("/ws")); c.recv(4096)
    c.sendall(b"a" * 100000); got = 0
    while got < 100000: got += len(c.recv(65536))
    for i in range(2):
        print("reload", proxy.reload().returncode); time.sleep(1)
        c.sendall(b"b" * 300000); got = 0
        while got < 300000: got += len(c.recv(65536))
        print("echo after reload", i, "ok", [(w["pid"], w["generation"], w["tunnels"]) for w in proxy.status()["workers"]])
    c.shutdown(socket.SHUT_WR)
    print("eof back:", c.recv(10) == b"")
    c.close(); time.sleep(1.5)
    print([l for l in open(proxy.access_log).read().splitlines() if "/ws" in l][-1:])
finally:
    proxy.stop(); backend.close()
