"""c01 (held): half-closed tunnels (either side) carry on across a reload; per_client.tunnels counts survive one."""
import os, signal, socket, sys, threading, time
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from h import *

def behaviour(conn):
    head = conn.read_head()
    conn.send(switch_response("websocket", head.raw))
    t = head.target
    if t.startswith("/ws/stream"):      # stream slowly 20 chunks every 0.1s then FIN, read until EOF
        for i in range(30):
            conn.sock.sendall(b"%04d" % i)
            time.sleep(0.1)
        conn.sock.shutdown(socket.SHUT_WR)
        while conn.sock.recv(65536):
            pass
    elif t.startswith("/ws/collect"):   # read until EOF, then answer count and close
        got = len(conn.take_buffered())
        while True:
            d = conn.sock.recv(65536)
            if not d: break
            got += len(d)
        conn.backend.results[t] = got
        conn.sock.sendall(b"got %d" % got)
    elif t.startswith("/ws/finfirst"):  # FIN at once, then read and count client bytes
        conn.sock.shutdown(socket.SHUT_WR)
        got = len(conn.take_buffered())
        while True:
            d = conn.sock.recv(65536)
            if not d: break
            got += len(d)
        conn.backend.results[t] = got
    else:
        while (d := conn.sock.recv(65536)):
            conn.sock.sendall(d)

b = RawBackend(behaviour, timeout=30)
with proxy([{"path": "/ws/", "to": b.ws_url + "/ws/"}], workers=1,
           limits={"per_client": {"tunnels": 2}}) as p:
    # A: client half-closed, backend streaming, across a reload
    s, head, buf = open_tunnel(p, "/ws/stream")
    print("A 101:", status_of(head))
    s.shutdown(socket.SHUT_WR)
    time.sleep(0.5)
    os.kill(p.proc.pid, signal.SIGHUP)
    p.wait_ready(generation=2)
    got = bytearray(buf)
    t0 = time.time()
    try:
        while (d := s.recv(65536)):
            got += d
    except Exception as e:
        print("A exc", e)
    print("A got", len(got), "bytes", bytes(got[-8:]), "in", round(time.time() - t0, 2), "s (expect 120)")
    s.close()
    # B: backend half-closed at once, client keeps sending across a reload
    s, head, buf = open_tunnel(p, "/ws/finfirst")
    time.sleep(0.2)
    for i in range(5):
        s.sendall(b"x" * 1000)
        time.sleep(0.05)
    os.kill(p.proc.pid, signal.SIGHUP)
    p.wait_ready(generation=3)
    time.sleep(0.5)
    for i in range(5):
        s.sendall(b"y" * 1000)
    s.shutdown(socket.SHUT_WR)
    s.settimeout(5)
    try:
        print("B recv after both FIN:", s.recv(10))
    except Exception as e:
        print("B exc", e)
    time.sleep(0.3)
    print("B backend got", b.results.get("/ws/finfirst"), "(expect 10000)")
    s.close()
    # D: per-client tunnels=2 across reload
    t1, h1, _ = open_tunnel(p, "/ws/echo1")
    t2, h2, _ = open_tunnel(p, "/ws/echo2")
    print("D two:", status_of(h1), status_of(h2))
    os.kill(p.proc.pid, signal.SIGHUP)
    p.wait_ready(generation=4)
    time.sleep(1)
    t3, h3, _ = open_tunnel(p, "/ws/echo3")
    print("D third after reload:", status_of(h3), "(expect 503)")
    t3.close()
    t1.close(); t2.close()
    time.sleep(0.5)
    ok = [status_of(open_tunnel(p, f"/ws/echo{i}")[1]) for i in (4, 5)]
    print("D after closing both, two more:", ok)
    st = status(p)
    print("D status clients:", st.get("clients"), [ (w["generation"], w["state"], w["connections"], w["tunnels"]) for w in st["workers"]])
b.close()
