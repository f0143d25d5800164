"""HTTP/2 requests whose `host` names the same origin as `:authority` but is spelled otherwise
(a default port written out or left off, RFC 9110 §4.2.3 / §7.2 say they are the same) are now
refused with RST_STREAM PROTOCOL_ERROR (5e742fc, fields.py `_required`: a byte-wise,
case-folded comparison).  Before, host was dropped and :authority went on.  Clients that
send both: Node's http2 with a `host` header set by the application, HTTP/1->2 gateways that
keep Host.  Run with MPM_ROOT=/tmp/review-base for the old behaviour."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _h import RawBackend, proxy  # noqa: E402
from h2client import H2Client  # noqa: E402

be = RawBackend()
p = proxy([{"path": "/", "to": be.url + "/"}], h2c=True)
cases = [("example.com", "Example.COM"),                    # case: accepted
         ("example.com:443", "example.com"),                # https default port written out in :authority
         ("example.com", "example.com:443"),                # ... in host
         ("example.com:80", "example.com")]                 # (scheme https, :80 is NOT default: a real difference)
refused = 0
for authority, host in cases:
    c = H2Client(p.port)
    s = c.response(c.request("GET", "/x", authority=authority, headers=[("host", host)]), 5)
    print(f":authority {authority!r:20} host {host!r:20} -> status {s.status} reset {s.reset}")
    refused += s.reset is not None and authority.split(":")[0] == host.split(":")[0].lower() and "80" not in authority
    c.close()
p.stop()
be.closing = True
be.sock.close()
print("REPRODUCED: same-origin host/:authority refused" if refused else "not reproduced")
sys.exit(1 if refused else 0)
