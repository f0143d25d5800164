"""In-process: does a TLS 1.3 session renewed at each resumption outlive the session timeout
of the session it began as?  Server: OpenSSL through Python's ssl, timeout set to 3 s."""
import ctypes, socket, ssl, threading, time
import h
from conf import openssl
ca = h.trustme.CA()
site = h.pair(ca, "s", "localhost")
server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
server.load_cert_chain(*site)
lib = openssl._lib
lib.SSL_CTX_set_timeout.argtypes = [ctypes.c_void_p, ctypes.c_long]
lib.SSL_CTX_set_timeout(openssl.ssl_ctx(server), 3)
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(8)
def serve():
    while True:
        c, _ = ls.accept()
        try:
            with server.wrap_socket(c, server_side=True) as t:
                t.recv(100); t.sendall(b"ok")
        except Exception:
            pass
threading.Thread(target=serve, daemon=True).start()
client = h.client_context(ca, ssl.TLSVersion.TLSv1_3)
def once(session):
    with client.wrap_socket(socket.create_connection(ls.getsockname()), server_hostname="localhost", session=session) as t:
        t.sendall(b"x"); t.recv(10)
        return t.session_reused, t.session
_, s = once(None)
start = time.monotonic()
while time.monotonic() - start < 9:
    time.sleep(2)
    reused, s = once(s)
    print(f"{time.monotonic()-start:4.1f}s resumed={reused}")
