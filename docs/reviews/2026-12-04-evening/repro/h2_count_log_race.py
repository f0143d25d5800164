"""tests/test_h2_header_block_count.py's first test reads the error log as soon as the GOAWAY
arrives; the worker flushes its log once per loop turn, after the GOAWAY is written.  Here: the
log right at the GOAWAY, and again after wait_log."""
import sys, tempfile
sys.path[:0] = [".", "tests"]
from h2raw import RawClient
from proxyproc import Proxy, wait_log
from rawbackend import RawBackend, serve_simple
backend = RawBackend(serve_simple)
proxy = Proxy(tempfile.mkdtemp(), [{"path": "/", "to": backend.url + "/"}], workers=1)
proxy.config["listen"] = [{"address": f"127.0.0.1:{proxy.port}", "http2": "h2c"}]
proxy.start()
try:
    a = RawClient(proxy.port)
    a.headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", "p"), (":path", "/b")] + [("x-a", "b")] * 1800)
    a.wait(lambda: a.goaway is not None)
    needle = "more than 364 fields in one header block"
    print("GOAWAY", a.goaway, "| in the log at once:", needle in proxy.error_text(),
          "| after wait_log:", needle in wait_log(proxy, needle))
finally:
    proxy.stop(); backend.close()
