"""<VirtualHost 127.0.0.1:PORT> next to <VirtualHost *:PORT>: httpd serves every connection to
127.0.0.1:PORT with the IP-based one, whatever the Host; the import made both name-based."""
from h import compare

diffs = compare("""
Listen 127.0.0.1:{port}
<VirtualHost *:{port}>
  ServerName app.test
  ProxyPass / http://127.0.0.1:{A}/
</VirtualHost>
<VirtualHost 127.0.0.1:{port}>
  ServerName other.test
  ProxyPass / http://127.0.0.1:{B}/
</VirtualHost>
""", [("/x", {"host": "app.test"}), ("/x", {"host": "other.test"}), ("/x", {"host": "zzz"})])
print(f"{len(diffs)} of 3 requests differ")
