"""Finding 1: a reload whose commit fails half-way (here: fork() refused by a task limit, as
systemd's TasksMax does) leaves two generations serving two configurations for good, the
listener sockets of the slots it never forked listening with nobody accepting (new
connections hang), and mpmctl says "the reload failed".

The master runs in a pids cgroup of its own (pids.max 5: the master, 2 workers, and room for
2 more processes).  The reload raises mpm.workers from 2 to 4, which a fresh start under the
same limit would run (master + 4 = 5).  PASS when the reload either takes effect whole or
leaves the old generation alone, and every new connection is answered."""

import os
import subprocess
import sys
import time

import h
from proxyproc import Proxy

CG = f"/sys/fs/cgroup/pids/mpm-reload-review-{os.getpid()}"


def main() -> int:
    os.mkdir(CG)
    with open(CG + "/pids.max", "w") as f:
        f.write("5")
    b = h.backend()
    p = Proxy(h.tmpdir(), [{"path": "/", "to": b.url}], workers=2)
    h._started.append(p)
    p.write_config()
    p.stdout = open(os.path.join(p.dir, "stdout.log"), "wb")
    p.stderr = open(os.path.join(p.dir, "stderr.log"), "wb")
    p.proc = subprocess.Popen(["sh", "-c", f'echo $$ > {CG}/cgroup.procs && exec "$0" -m mpm start -c "$1"',
                               h.PY, p.config_path], stdout=p.stdout, stderr=p.stderr, cwd=h.ROOT)
    try:
        p.wait_ready()
        p.config["mpm"]["workers"] = 4
        p.write_config()
        r = p.reload()
        print(f"mpmctl reload: exit {r.returncode}: {(r.stdout + r.stderr).strip()}")
        time.sleep(2)
        st = p.status()
        gens = sorted({w["generation"] for w in st["workers"]})
        print(f"master generation {st['generation']}, config workers {st['mpm']['workers']}, "
              f"workers running: {[(w['pid'], w['generation']) for w in st['workers']]}")
        answered = sum(h.get(p.url(f"/n{i}"), timeout=1)[0] == 200 for i in range(40))
        print(f"40 new connections: {answered} answered")
        time.sleep(11)          # past graceful_timeout (10 s): does the old generation ever go?
        st = p.status()
        still = sorted({w["generation"] for w in st["workers"]})
        print(f"12 s later: generations running {still}")
        if "reload failed" in p.error_text():
            print("error log: 'reload failed' with a traceback (" +
                  p.error_text().strip().splitlines()[-1].strip() + ")")
        ok = answered == 40 and len(still) == 1 and (
            (r.returncode == 0 and st["mpm"]["workers"] == 4) or (r.returncode != 0 and st["mpm"]["workers"] == 2
                                                                  and still == [1]))
        h.result(ok, "a reload whose fork fails after the commit began: one generation, one configuration, "
                     "every connection answered, and mpmctl's answer says which")
        return 0 if ok else 1
    finally:
        p.stop()
        time.sleep(0.5)
        os.rmdir(CG)


if __name__ == "__main__":
    sys.exit(main())
