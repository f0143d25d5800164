"""Finding 2: X-SSL-Client_Verify (an underscore for a hyphen) passes, and CGI-style backends
read it as the real field.

CGI, WSGI, PHP and Rack name a field HTTP_ + upper-case + '-'->'_', so `X-SSL-Client_Verify`,
`X_SSL_Client_S_DN`... become HTTP_X_SSL_CLIENT_VERIFY / HTTP_X_SSL_CLIENT_S_DN.  mpm-proxy drops
only names starting with "x-ssl-client-".  This is why nginx ignores names with underscores by
default (underscores_in_headers off) and httpd leaves them out of the CGI environment.  The
backend here is Python's own wsgiref server.  From the plain listener beside the mTLS one, a client
with no certificate at all makes the application see HTTP_X_SSL_CLIENT_VERIFY=SUCCESS and
HTTP_X_SSL_CLIENT_S_DN=CN=admin.

PASS when the application sees no client-written X-SSL-Client value; FAIL otherwise."""
import json
import threading
import wsgiref.simple_server

from _common import mtls_proxy, plain_connect, read_response


def app(environ, start_response):
    seen = {k: v for k, v in environ.items() if k.startswith("HTTP_X_SSL_CLIENT")}
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(seen).encode()]


class Quiet(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, *args):
        pass


server = wsgiref.simple_server.make_server("127.0.0.1", 0, app, handler_class=Quiet)
threading.Thread(target=server.serve_forever, daemon=True).start()
try:
    with mtls_proxy() as (proxy, backend, context, ca, directory, site):
        proxy.config["routes"] = [{"path": "/", "to": f"http://127.0.0.1:{server.server_port}/"}]
        proxy.write_config()
        assert proxy.reload().returncode == 0
        proxy.wait_ready(generation=2)
        sock = plain_connect(proxy.plain_port)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nX-SSL-Client_Verify: SUCCESS\r\nX_SSL_Client_S_DN: CN=admin\r\n"
                     b"Connection: close\r\n\r\n")
        answer = read_response(sock)
        sock.close()
        seen = json.loads(answer.split(b"\r\n\r\n", 1)[1] or b"{}")
        print("the WSGI application's environ:", seen)
        print("FAIL" if seen else "PASS")
finally:
    server.shutdown()
    server.server_close()
