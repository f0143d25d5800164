"""Finding 2: `log.error` pointed at a FIFO with no reader yet (a log shipper not started,
or restarting) passes the loader's check, and the reload's last step opens it with
logging.FileHandler: a blocking open() that waits for a reader.  The master hangs there for
good, after it has already forked the new generation and retired the old: no reaping or
respawning, no control socket, no stop.  `mpmctl reload` waits 30 s, then falls back to
SIGHUP and says "reload signalled" with exit 0.

PASS when the reload answers within a few seconds (refused with FILE:LINE, or done with the
log opened without blocking), the master still answers `mpmctl status`, and a killed worker
is replaced."""

import os
import subprocess
import sys
import time

import h


def main() -> int:
    b = h.backend()
    p = h.proxy([{"path": "/", "to": b.url}])
    fifo = os.path.join(p.dir, "error.fifo")
    os.mkfifo(fifo)
    p.config["log"]["error"] = fifo
    p.write_config()
    print("configtest:", p.mpmctl("configtest").stdout.strip())
    t0 = time.monotonic()
    try:
        r = subprocess.run([h.PY, "-m", "mpm", "reload", "-c", p.config_path], capture_output=True, text=True,
                           timeout=45, cwd=h.ROOT)
        answer = f"exit {r.returncode}: {(r.stdout + r.stderr).strip()}"
    except subprocess.TimeoutExpired:
        answer = "no answer in 45 s"
    took = time.monotonic() - t0
    print(f"mpmctl reload after {took:.1f}s: {answer}")
    with open(f"/proc/{p.proc.pid}/wchan") as f:
        print("master blocked in:", f.read().strip() or "(running)")
    st = p.mpmctl("status", timeout=20)
    print(f"mpmctl status: exit {st.returncode} {st.stderr.strip()}")
    workers = h.children(p.proc.pid)
    os.kill(workers[-1], 9)
    time.sleep(3)
    replaced = p.mpmctl("status", timeout=20).returncode == 0 and \
        len([w for w in p.status()["workers"] if w["pid"] not in workers]) > 0
    print("killed worker replaced within 3 s:", replaced)
    ok = took < 10 and st.returncode == 0 and replaced
    # let the master go: a reader opens the FIFO (and the file is put back for the stop)
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    time.sleep(1)
    p.stop()
    os.close(fd)
    h.result(ok, "a reload to a FIFO error log with no reader leaves a master that answers and respawns")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
