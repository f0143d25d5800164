"""httpd's regexes are PCRE: `[[:digit:]]` is a POSIX class, which Python's `re` reads as the
characters '[:dgit' followed by ']' (a FutureWarning, exit 0, other routes); `(?<id>...)` named
groups (httpd's own <LocationMatch> example) made the import refuse the file (exit 2)."""
from h import compare

compare("""
Listen 127.0.0.1:{port}
ProxyPassMatch "^/u/([[:digit:]]+)$" http://127.0.0.1:{A}/user/$1
RewriteEngine on
RewriteRule "^/r/([[:alpha:]]+)$" http://127.0.0.1:{C}/r/$1 [P]
ProxyPass / http://127.0.0.1:{B}/
""", [(p, {"host": "app.test"}) for p in ["/u/123", "/u/d]", "/r/abc", "/r/123"]])
