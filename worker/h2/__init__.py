"""HTTP/2 to clients (RFC 9113), with WebSockets over HTTP/2 (RFC 8441), toward HTTP/1.1 backends.

    connection.py  one client connection: the socket, the `h2` machine (machine.py), its streams,
                   writing, flow-control scheduling, GOAWAY, the defences' budgets (defences.py)
    stream.py      one stream: the client side of an ordinary `worker.exchange.Exchange`
                   (worker.clientside), or of an RFC 8441 tunnel
    tunnel.py      an RFC 8441 WebSocket: a stream relayed to a backend socket
    fields.py      header fields across the boundary: HTTP/2 request -> HTTP/1.1 head, and back
    h2c.py         cleartext HTTP/2 with prior knowledge on `http2: h2c` listeners
    machine.py     the h2 package as the proxy configures it
"""
