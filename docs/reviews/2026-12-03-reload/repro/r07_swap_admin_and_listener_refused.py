"""Finding 6: a reload that gives the admin listener an address the same reload takes away
from a data listener (or the other way round) is refused, "Address already in use": the new
socket is bound in the validate step while the master still holds the old one.  A fresh
start with the same file works (configtest says Syntax OK).

PASS when both reloads take effect."""

import sys

import h


def main() -> int:
    b = h.backend()
    aport = h.free_port()
    p = h.proxy([{"path": "/", "to": b.url}], admin={"listen": f"127.0.0.1:{aport}"})
    dport = p.port
    p.config["listen"] = [f"127.0.0.1:{aport}"]
    p.config["admin"] = {"listen": f"127.0.0.1:{dport}"}
    p.write_config()
    print("configtest:", p.mpmctl("configtest").stdout.strip())
    r1 = p.reload()
    print(f"swap admin and data ports: exit {r1.returncode}: {(r1.stdout + r1.stderr).strip()}")
    p.config["admin"] = {"listen": f"127.0.0.1:{h.free_port()}"}
    p.write_config()
    r2 = p.reload()
    print(f"data listener onto the admin's old port: exit {r2.returncode}: {(r2.stdout + r2.stderr).strip()}")
    ok = r1.returncode == 0 and r2.returncode == 0
    h.result(ok, "moving a port between the admin listener and a data listener by reload")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
