"""Two name-based virtual hosts each define <Proxy balancer://mycluster> with their own
member; a third uses the main server's. httpd keeps them apart (and a main-server balancer
of the same name wins over a virtual host's); the import merged them into one balancer."""
from h import compare

diffs = compare("""
Listen 127.0.0.1:{port}
<Proxy balancer://pool>
  BalancerMember http://127.0.0.1:{C}
</Proxy>
ProxyPass /main/ balancer://pool/
<VirtualHost *:{port}>
  ServerName app.test
  <Proxy balancer://mycluster>
    BalancerMember http://127.0.0.1:{A}
  </Proxy>
  <Proxy balancer://pool>
    BalancerMember http://127.0.0.1:{A}
  </Proxy>
  ProxyPass /own/ balancer://pool/
  ProxyPass / balancer://mycluster/
</VirtualHost>
<VirtualHost *:{port}>
  ServerName other.test
  <Proxy balancer://mycluster>
    BalancerMember http://127.0.0.1:{B}
  </Proxy>
  ProxyPass / balancer://mycluster/
</VirtualHost>
""", [(p, {"host": h}) for h in ("app.test", "other.test") for p in ("/x1", "/x2", "/x3", "/main/1", "/main/2", "/own/1")],
    show=False)
print(f"{len(diffs)} of 12 requests reached another backend than in httpd")
for d in diffs:
    print("  ", d)
