"""#1: a keep-alive connection on a listener a reload removed is served on, reload after reload.

Two listeners; a keep-alive connection on the second; a reload without it; once the old
worker is gone, the connection is used again four times.  Expected (nginx, Apache: closed at
the reload; HAProxy idle-close-on-response: one more response with Connection: close): at
most one more response, saying `Connection: close`."""
import socket
import time

from h import free_port, proxy, raw, read_head, wait_for

with raw() as backend, proxy([{"path": "/", "to": backend.url + "/"}], start=False, workers=1,
                             timeouts={"keepalive": 30}) as p:
    gone_port = free_port()
    p.config["listen"] = [f"127.0.0.1:{p.port}", f"127.0.0.1:{gone_port}"]
    p.start()
    s = socket.create_connection(("127.0.0.1", gone_port), timeout=5)
    s.sendall(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n")
    read_head(s)
    old = p.worker_pids()
    p.config["listen"] = [f"127.0.0.1:{p.port}"]
    p.write_config()
    print("reload:", p.reload().stdout.strip())
    wait_for(lambda: not set(old) & set(p.worker_pids(current_only=False)), 10, 0.1, "old worker gone")
    try:
        socket.create_connection(("127.0.0.1", gone_port), timeout=2)
        print("a new connection to the removed port: accepted")
    except OSError as exc:
        print("a new connection to the removed port:", exc)
    for i in range(4):
        try:
            s.sendall(b"GET /b HTTP/1.1\r\nHost: t\r\n\r\n")
            head, _ = read_head(s)
            close = b"connection: close" in head.lower()
            print(f"request {i + 1} on the kept connection:", head.split(b"\r\n")[0].decode(),
                  "(Connection: close)" if close else "(kept alive)")
        except OSError as exc:
            print(f"request {i + 1} on the kept connection:", type(exc).__name__)
            break
        time.sleep(0.5)
    s.close()
