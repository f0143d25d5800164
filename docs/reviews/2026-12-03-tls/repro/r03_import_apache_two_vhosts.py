"""r03: mpmctl import-apache on apache/two-vhosts.conf (SSLVerifyClient of a non-default name-based virtual host): the exit status,
the notes on stderr, and the listener it writes."""
import subprocess
import sys

import h

result = subprocess.run([sys.executable, "-m", "mpm", "import-apache", h.os.path.join(h.HERE, "apache", "two-vhosts.conf")],
                        capture_output=True, text=True, cwd=h.ROOT, timeout=60)
print("exit status:", result.returncode)
print("\n".join(line for line in result.stderr.splitlines() if "configtest" not in line))
print("\n".join(line for line in result.stdout.splitlines() if "tls:" in line))
