"""Finding 1: a client's X-SSL-Client-* fields reach the backend as request trailers.

Once a listener has client_ca, README says every X-SSL-Client-* field a client sends is dropped
(unless a trusted proxy sent it).  Header-section fields are; trailer fields are relayed as they
came: in an HTTP/1.1 chunked body (plain listener) and in an HTTP/2 trailing HEADERS frame (the
mTLS listener itself, beside the proxy's own X-SSL-Client-* lines).  A backend that merges
trailers into its header fields (httpd's `MergeTrailers on`; CVE-2013-5704 was this bypass of
mod_headers' `RequestHeader unset`) then reads the client's values.

PASS when no X-SSL-Client-* line reaches the backend after the head; FAIL otherwise."""
import time

from _common import mtls_proxy, plain_connect, read_response, ssl
from h2client import H2Client

with mtls_proxy() as (proxy, backend, context, ca, directory, site):
    sock = plain_connect(proxy.plain_port)
    sock.sendall(b"POST /h1 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                 b"3\r\nabc\r\n0\r\nX-SSL-Client-Verify: SUCCESS\r\nX-SSL-Client-S-DN: CN=admin\r\n\r\n")
    print("HTTP/1.1 answer:", read_response(sock).split(b"\r\n", 1)[0])
    sock.close()
    h2_context = ssl.create_default_context()
    ca.configure_trust(h2_context)
    h2_context.load_cert_chain(f"{directory}/client.pem", f"{directory}/client.key")
    client = H2Client(proxy.port, tls=h2_context)
    stream = client.request("POST", "/h2", body=b"abc", end=False)
    client.conn.send_headers(stream, [("x-ssl-client-verify", "SUCCESS"), ("x-ssl-client-s-dn", "CN=admin")],
                             end_stream=True)
    client.flush()
    print("HTTP/2 answer:", client.response(stream).status)
    client.close()
    time.sleep(0.5)
    leaked = []
    for raw in backend.raw:
        for message in raw.split(b"\r\n0\r\n")[1:]:          # what follows each last chunk: trailers
            trailers = message.split(b"\r\n\r\n", 1)[0]
            leaked += [line for line in trailers.split(b"\r\n") if line.lower().startswith(b"x-ssl-client-")]
    print("trailer lines the backend received:", leaked)
    print("FAIL" if leaked else "PASS")
