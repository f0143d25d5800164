"""1xx interim responses (100 Continue, 103 Early Hints) from the backend are relayed to an
HTTP/1.0 client.  RFC 9110 §15.2: "A server MUST NOT send a 1xx response to an HTTP/1.0
client."  Apache's ap_send_interim_response returns early for proto_num < 1.1."""
from h import Backend, recv_head, recv_for, start_proxy, client_exchange

def script(s, rec):
    recv_head(s, rec)
    s.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
              b"HTTP/1.1 100 Continue\r\n\r\n"
              b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
    recv_for(s, rec, 1.0)

be = Backend(script)
p = start_proxy([{"path": "/", "to": f"http://127.0.0.1:{be.port}/"}])
out = client_exchange(p.port, b"GET / HTTP/1.0\r\n\r\n", 2.0)
print("HTTP/1.0 client received:", repr(out))
print("interim heads sent to the HTTP/1.0 client:", out.count(b"HTTP/1.1 1"))
