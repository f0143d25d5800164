"""A backend sends its whole response (1 MiB) before it reads the upload, then closes (RST).
The client reads slowly, so the proxy is FLUSHING (the response read whole, the request body
still due) while the client goes on uploading.  The client should get the whole response;
what it gets is cut when the proxy's next body send to the backend fails first."""
import socket
import threading
import time

from h import RawBackend, proxy, recv_all

SIZE = 1 << 20


def early_answer(conn):
    head = conn.read_head()
    if head is None:
        return
    conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % SIZE + b"r" * SIZE)
    time.sleep(0.5)
    conn.reset()


def run(splice):
    backend = RawBackend(early_answer)
    p = proxy([{"path": "/", "to": backend.url + "/"}], limits={"request_body": 0},
              environ={"MPM_SPLICE": "1" if splice else "0"})
    out = []
    for _ in range(4):
        s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        s.sendall(b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (100 << 20))
        stop = threading.Event()

        def pump():
            try:
                while not stop.is_set():
                    s.send(b"x" * 16384)
                    time.sleep(0.005)
            except OSError:
                pass
        threading.Thread(target=pump, daemon=True).start()
        time.sleep(1.5)        # the backend has answered and reset meanwhile
        data, how = recv_all(s, 5)
        stop.set()
        s.close()
        body = data.partition(b"\r\n\r\n")[2]
        out.append(f"{data[:12].decode()} body {len(body)}/{SIZE} {how}")
    print(p.error_text()[-300:])
    p.stop()
    backend.close()
    return out


for splice in (True, False):
    print(f"splice={splice}:", "; ".join(run(splice)))
