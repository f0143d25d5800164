"""The soak's own backend (threads, its own process): what a real site's backends do besides
answering well.  GET /small, /64k, /big (2 MiB, for clients that abort), POST /echo (reads the
body, answers its length), GET /early (a head promising 10,000 bytes, 100 sent, then close),
GET /cut (close with no answer).  Keep-alive otherwise.  Prints `listening on PORT`."""

import socket
import sys
import threading

BODIES = {b"/small": b"x" * 100, b"/64k": b"y" * 65536, b"/big": b"z" * (2 << 20)}


def answer(conn, body: bytes) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n\r\n" % len(body) + body)


def serve(conn: socket.socket) -> None:
    buf = b""
    conn.settimeout(60)
    try:
        while True:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            method, path = lines[0].split(b" ")[:2]
            path = path.split(b"?")[0]
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(buf) < length:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            body, buf = buf[:length], buf[length:]
            if path == b"/echo":
                answer(conn, b"got %d" % len(body))
            elif path == b"/early":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n" + b"e" * 100)
                return
            elif path == b"/cut":
                return
            elif path in BODIES:
                answer(conn, BODIES[path])
            else:
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    except OSError:
        return
    finally:
        conn.close()


def main() -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0))
    listener.listen(512)
    print(f"listening on {listener.getsockname()[1]}", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
