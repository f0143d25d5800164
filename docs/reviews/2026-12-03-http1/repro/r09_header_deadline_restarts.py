"""timeouts.client_header is meant to bound how long a connection may take to deliver its
request head (Apache RequestReadTimeout header=, nginx client_header_timeout).  It restarts:
(a) when the first byte of a fresh connection arrives (ClientConnection._read: state IDLE ->
deadline = now + client_header), so a client that waits just under the timeout before its
first byte gets a second full period; (b) on a proxy_protocol listener the PROXY header has its
own full period, then the head another one.  With client_header: 2 a connection here holds its
slot ~4 s (plain) and ~6 s (PROXY) without ever completing a head."""
import socket, time
from h import Backend, start_proxy
from support import free_port

be = Backend(lambda s, rec: None)
pport = free_port()
p = start_proxy([{"path": "/", "to": f"http://127.0.0.1:{be.port}/"}],
                listen=[f"127.0.0.1:{free_port()}", {"address": f"127.0.0.1:{pport}", "proxy_protocol": True}],
                timeouts={"connect": 2, "proxy": 10, "client_header": 2, "keepalive": 5})
plain = int(p.config["listen"][0].rsplit(":", 1)[1])

def trickle(port, prefix_wait, proxy):
    s = socket.create_connection(("127.0.0.1", port))
    t = time.time()
    s.settimeout(0.1)
    if proxy:
        time.sleep(prefix_wait)
        s.sendall(b"PROXY TCP4 9.9.9.9 1.1.1.1 1234 80\r\n")
    time.sleep(prefix_wait)
    head = b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: " + b"a" * 200
    for i in range(len(head)):
        try:
            s.sendall(head[i:i + 1])
        except OSError:
            break
        try:
            d = s.recv(200)
            return time.time() - t, d[:30]
        except socket.timeout:
            pass
        except OSError as e:
            return time.time() - t, repr(e).encode()
    return time.time() - t, b"(still open)"

print("client_header = 2 s")
print("plain, first byte at 0 s      : closed after %.1f s with %r" % trickle(plain, 0.0, False))
print("plain, first byte at 1.9 s    : closed after %.1f s with %r" % trickle(plain, 1.9, False))
print("PROXY at 1.9 s, head at 3.8 s : closed after %.1f s with %r" % trickle(pport, 1.9, True))
