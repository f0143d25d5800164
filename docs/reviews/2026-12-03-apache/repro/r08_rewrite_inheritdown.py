"""RewriteOptions InheritDown in the main server: httpd applies its rules in every virtual
host; the import reported them as not applying (exit 0)."""
from h import compare

compare("""
Listen 127.0.0.1:{port}
RewriteEngine On
RewriteOptions InheritDown
RewriteRule ^/main/(.*) http://127.0.0.1:{C}/main/$1 [P]
<VirtualHost *:{port}>
  ServerName app.test
  RewriteRule ^/r/(.*) http://127.0.0.1:{A}/r/$1 [P]
  ProxyPass / http://127.0.0.1:{B}/
</VirtualHost>
""", [("/r/x", {"host": "app.test"}), ("/main/x", {"host": "app.test"}), ("/y", {"host": "app.test"})])
