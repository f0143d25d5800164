"""Finding 4: RFC 8441 conversion takes the client's `:protocol` and `sec-websocket-key`
as they come.

  a) `:protocol: websocket, h2c` (not a token: RFC 8441 §4 wants one protocol name) is
     accepted; the route keeps "websocket" of it, but because the value is not exactly
     "websocket" the proxy adds no Sec-WebSocket-Key of its own and skips its
     Sec-WebSocket-Accept check: the backend gets the client's own key, and the tunnel opens.
  b) `:protocol: websocket` plus the client's own `sec-websocket-key` field: the backend gets
     two Sec-WebSocket-Key lines, answers the first (the client's), and the proxy's check
     fails: 502 for a request that could have been served (or refused as malformed).

The backend here is a WebSocket server that answers the first key it sees."""

import base64
import hashlib

from h import Backend, Client, arm, show, start_proxy

arm(60)
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_server(conn, head, body):
    keys = [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n") if line.lower().startswith(b"sec-websocket-key:")]
    if not keys:
        return b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
    accept = base64.b64encode(hashlib.sha1(keys[0] + GUID).digest())
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")


backend = Backend(ws_server)
proxy = start_proxy([{"path": "/ws/", "to": f"ws://127.0.0.1:{backend.port}/ws/"}])
client = Client(proxy.port)
client.pump(lambda: False, 0.3)          # the server's SETTINGS (ENABLE_CONNECT_PROTOCOL)
OWN_KEY = (b"sec-websocket-key", b"Y2xpZW50LWNob3Nlbi1rZXk=")
for label, protocol, extra in [("a) :protocol 'websocket, h2c' + own key", b"websocket, h2c", [OWN_KEY]),
                               ("b) :protocol 'websocket' + own key", b"websocket", [OWN_KEY]),
                               ("control: :protocol 'websocket'", b"websocket", [])]:
    before = len(backend.heads)
    sid = client.request([(b":method", b"CONNECT"), (b":protocol", protocol), (b":scheme", b"http"),
                          (b":authority", b"a"), (b":path", b"/ws/x"), (b"sec-websocket-version", b"13"), *extra],
                         end=False)
    st = client.streams[sid]
    client.pump(lambda: st.headers is not None or st.done, 3)
    show(label, st.summary()[:60])
    for head in backend.heads[before:]:
        show("   backend received", head)
