"""c02 (held): a 101 with Content-Length / chunked framing, data + FIN, data + RST, 100 before 101, early frames."""
import os, socket, sys, time
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from h import *
def behaviour(conn):
    head = conn.read_head()
    t = head.target
    sw = switch_response("websocket", head.raw)
    if t.endswith("/cl"):
        conn.send(sw.replace(b"\r\n\r\n", b"\r\nContent-Length: 5\r\n\r\n") + b"hello" + b"world")
        time.sleep(0.3); conn.sock.shutdown(socket.SHUT_WR); time.sleep(0.3)
    elif t.endswith("/fin"):
        conn.send(sw + b"data-then-fin"); conn.sock.shutdown(socket.SHUT_WR)
        conn.backend.results[t] = conn.sock.recv(100)
    elif t.endswith("/rst"):
        conn.send(sw + b"data-then-rst"); time.sleep(0.05); conn.reset()
    elif t.endswith("/continue"):
        conn.send(b"HTTP/1.1 100 Continue\r\n\r\n" + sw + b"after-100"); time.sleep(0.2); conn.sock.shutdown(socket.SHUT_WR); time.sleep(0.3)
    elif t.endswith("/chunked101"):
        conn.send(sw.replace(b"\r\n\r\n", b"\r\nTransfer-Encoding: chunked\r\n\r\n") + b"5\r\nhello\r\n0\r\n\r\n"); time.sleep(0.2); conn.sock.shutdown(socket.SHUT_WR); time.sleep(0.3)
    elif t.endswith("/early"):
        early = conn.take_buffered()
        conn.send(sw)
        conn.send(b"early:" + early)
        time.sleep(0.2); conn.sock.shutdown(socket.SHUT_WR); time.sleep(0.3)
b = RawBackend(behaviour, timeout=5)
with proxy([{"path": "/ws/", "to": b.ws_url + "/ws/"}], workers=1) as p:
    for path in ("/ws/cl", "/ws/fin", "/ws/rst", "/ws/continue", "/ws/chunked101"):
        s, head, buf = open_tunnel(p, path)
        data = bytes(buf)
        try:
            while (d := s.recv(65536)):
                data += d
            how = "eof"
        except OSError as e:
            how = repr(e)
        if path.endswith("fin"):
            s.sendall(b"up"); time.sleep(0.2)
        print(path, status_of(head), head.split(b"\r\n")[1:4], data, how)
        s.close()
    print("fin: backend got", b.results)
    # early frames, sent in the same write as the handshake
    s = socket.create_connection(("127.0.0.1", p.port)); s.settimeout(5)
    s.sendall(upgrade_request("/ws/early") + b"FRAME1")
    head, buf = read_head(s)
    data = bytes(buf)
    while (d := s.recv(65536)):
        data += d
    print("early", status_of(head), data)
    print(p.access_lines()[-6:])
b.close()
