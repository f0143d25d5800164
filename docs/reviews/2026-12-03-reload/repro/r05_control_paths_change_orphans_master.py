"""Finding 4: editing `control:` (pidfile or socket) in the file makes `mpmctl reload`,
`status` and `stop -c FILE` answer "not running" (exit 3) while the master runs: they look
at the new paths, the master keeps the old ones ("control paths changed: they take effect at
the next restart") and the next restart cannot be made with mpmctl (stop: not running; start:
the port is taken).

PASS when mpmctl still reaches the running master (or the reload moves the paths)."""

import os
import signal
import sys
import time

import h


def main() -> int:
    b = h.backend()
    p = h.proxy([{"path": "/", "to": b.url}])
    os.makedirs(os.path.join(p.dir, "run2"))
    p.config["control"] = {"pidfile": "run2/mpm.pid", "socket": "run2/mpm.sock"}
    p.write_config()
    codes = {}
    for verb in ("reload", "status", "stop"):
        r = p.mpmctl(verb)
        codes[verb] = r.returncode
        print(f"mpmctl {verb}: exit {r.returncode}: {(r.stdout + r.stderr).strip()[:120]}")
    os.kill(p.proc.pid, signal.SIGHUP)
    time.sleep(2)
    said = [line.split("] ", 3)[-1] for line in p.error_text().splitlines() if "control paths" in line]
    print("after SIGHUP the master says:", said)
    r = p.mpmctl("stop")
    codes["stop after reload"] = r.returncode
    print(f"mpmctl stop after the reload: exit {r.returncode}: {(r.stdout + r.stderr).strip()}")
    alive = p.proc.poll() is None
    print("master still running:", alive)
    p.config["control"] = {"pidfile": "run/mpm.pid", "socket": "run/mpm.sock"}
    p.write_config()                 # so the harness can stop it
    ok = not alive or all(code == 0 for code in codes.values())
    h.result(ok, "mpmctl reaches the running master after control paths changed in the file")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
