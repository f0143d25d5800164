"""ProxyPass inside <LocationMatch>/<Location ~>: httpd reads the section's pattern as a regex
only when it holds *, ? or [ (as a wildcard test does); otherwise as literal text, prefix-matched
as ProxyPass /path is.  The import always read it as a regex."""
from h import compare

diffs = compare("""
Listen 127.0.0.1:{port}
<LocationMatch "^/api/">
  ProxyPass http://127.0.0.1:{A}/v2
</LocationMatch>
<LocationMatch "/b5/">
  ProxyPass http://127.0.0.1:{B}/v2/
</LocationMatch>
<Location ~ "^/t8/">
  ProxyPass http://127.0.0.1:{A}/t/
</Location>
<LocationMatch "^/a2/.*">
  ProxyPass http://127.0.0.1:{C}/v2
</LocationMatch>
ProxyPass / http://127.0.0.1:{C}/
""", [(p, {"host": "app.test"}) for p in ["/api/x", "/b5/x", "/b5", "/q/b5/x", "/t8/x", "/a2/x"]])
print(f"{len(diffs)} of 6 requests differ")
