"""A backend that answers an upload early (a 413 with a body, Connection: close) and closes.
mpm has read the whole response but the client, still uploading, has not taken all of it yet
(FLUSHING).  The next body bytes mpm forwards hit the closed backend; the send failure goes
to Exchange.backend_failed -> answer() -> resp_started -> client.close(), so the response
the backend sent whole is cut short for the client (the backend's EPOLLERR, handled by
_lost_after_response, is only the fallback when it is seen first)."""
import socket, threading, time
from h import Backend, recv_head, start_proxy

BODY = 200_000

def script(s, rec):
    head, rest = recv_head(s, rec)
    s.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % BODY
              + b"x" * BODY)
    time.sleep(0.3)
    s.close()                  # the proxy keeps sending the body: RST from here on

be = Backend(script)
p = start_proxy([{"path": "/", "to": f"http://127.0.0.1:{be.port}/"}], workers=1)

def attempt():
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)     # a slow reader
    c.connect(("127.0.0.1", p.port))
    c.sendall(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100000000\r\n\r\n")
    stop = time.time() + 1.5
    c.settimeout(0.05)
    sent = 0
    while time.time() < stop:           # keep uploading, do not read yet
        try:
            sent += c.send(b"u" * 8192)
        except (socket.timeout, BlockingIOError):
            pass
        except OSError:
            break
        time.sleep(0.002)
    c.settimeout(3)
    data = bytearray()
    try:
        while True:
            d = c.recv(65536)
            if not d:
                break
            data += d
    except OSError as e:
        data += b"<%s>" % type(e).__name__.encode()
    c.close()
    head_end = data.find(b"\r\n\r\n")
    body = len(data) - head_end - 4 if head_end >= 0 else -1
    return bytes(data[:60]), body, sent

for i in range(3):
    head, body, sent = attempt()
    print(f"try {i}: uploaded {sent} bytes; client got head {head!r}... and {body} of {BODY} body bytes"
          + ("  <-- CUT" if body < BODY else ""))
    time.sleep(0.3)
print(open(p.error_log).read()[-600:])
