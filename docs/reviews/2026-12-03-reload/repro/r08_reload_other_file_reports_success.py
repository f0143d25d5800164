"""Finding 7: `mpmctl reload -c new.yaml` (same control paths as the running master's file)
checks new.yaml, then asks the master to reload, which re-reads the file it was started with.
mpmctl prints "reloaded: generation 2" and exits 0; nothing of new.yaml is in effect.  With
new.yaml broken, mpmctl refuses with new.yaml's errors, though the master's own file is fine.

PASS when mpmctl's answer matches what the master did (new.yaml served, or the answer says
which file was reloaded / refuses)."""

import copy
import os
import subprocess
import sys
import time

import h
import yaml


def main() -> int:
    one, two = h.backend(b"one"), h.backend(b"two")
    p = h.proxy([{"path": "/", "to": one.url}])
    other = copy.deepcopy(p.config)
    other["routes"] = [{"path": "/", "to": two.url}]
    path = os.path.join(p.dir, "new.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(other, f)
    r = subprocess.run([h.PY, "-m", "mpm", "reload", "-c", path], capture_output=True, text=True, cwd=h.ROOT)
    print(f"mpmctl reload -c new.yaml: exit {r.returncode}: {(r.stdout + r.stderr).strip()}")
    time.sleep(1)
    served = h.get(p.url("/"))[1]
    print(f"served afterwards: {served!r} (new.yaml routes to the backend answering b'two')")
    ok = served == b"two" or r.returncode != 0 or "mpm.yaml" in r.stdout
    h.result(ok, "mpmctl reload -c FILE reports what the master reloaded")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
