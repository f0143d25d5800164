"""A backend response preceded by an empty line (CRLF) -- llhttp skips it -- is relayed with
the original status line turned into a *header line*: mpm sends the client
"HTTP/1.1 200 \r\nHTTP/1.1 200 OK\r\n...", a head no strict parser accepts (a field line
without a colon) and with the reason phrase lost.  Same after an interim 100 followed by a
stray CRLF."""
from h import Backend, recv_head, recv_for, start_proxy, client_exchange
import h11

MODE = {}
def script(s, rec):
    recv_head(s, rec)
    s.sendall(MODE["resp"])
    recv_for(s, rec, 1.0)

be = Backend(script)
p = start_proxy([{"path": "/", "to": f"http://127.0.0.1:{be.port}/"}])
for resp in (b"\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
             b"HTTP/1.1 100 Continue\r\n\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"):
    MODE["resp"] = resp
    out = client_exchange(p.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1.5)
    print("backend sent :", repr(resp))
    print("client got   :", repr(out))
    c = h11.Connection(h11.CLIENT)
    c.send(h11.Request(method="GET", target="/", headers=[("Host", "a")]))
    c.receive_data(out)
    try:
        while True:
            ev = c.next_event()
            if ev is h11.NEED_DATA or isinstance(ev, h11.EndOfMessage):
                print("h11 parsed it:", ev)
                break
    except h11.RemoteProtocolError as e:
        print("h11 (client) rejects the head mpm sent:", e)
