"""BalancerMember lbset=1: httpd sends nothing to it while an lbset=0 member is usable; the
import dropped lbset (exit 0) and mpm-proxy shares the load between both."""
from h import compare

diffs = compare("""
Listen 127.0.0.1:{port}
<Proxy balancer://pool>
  BalancerMember http://127.0.0.1:{A}
  BalancerMember http://127.0.0.1:{B} lbset=1
</Proxy>
ProxyPass / balancer://pool/
""", [(f"/{i}", {"host": "app.test"}) for i in range(6)], show=False)
print(f"{len(diffs)} of 6 requests reached the lbset=1 member in mpm-proxy, none in httpd")
