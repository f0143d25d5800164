"""Finding 5: the first reload makes the master (and the shared memory) touch every page of
the client table's per-worker counter columns: ClientTable.release_dead zeroes a dead
worker's cell with a strided write over every entry, and with `cells` 8-byte counters per
entry that write lands on every page.  shm/clients.py says the table is "touched only as
entries are used"; with `limits.per_client.table: 1048576`, workers 2 (8 cells) that is
+128 MiB of shared memory at the first reload; with workers 64 (256 cells) it is 4 GiB, and
the master's loop stalls while it faults the pages in (1.3 s measured for 1 GiB).

PASS when a reload of an idle server grows the master's shared memory by less than 16 MiB."""

import sys
import time

import h


def shmem_kb(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("RssShmem"):
            return int(line.split()[1])
    return 0


def main() -> int:
    b = h.backend()
    p = h.proxy([{"path": "/", "to": b.url}], workers=2,
                limits={"per_client": {"connections": 100, "table": 1 << 20}})
    time.sleep(1)
    before = shmem_kb(p.proc.pid)
    print(f"after start: master RssShmem {before} kB; GET -> {h.get(p.url('/'))[0]}")
    r = p.reload()
    time.sleep(2)
    after = shmem_kb(p.proc.pid)
    print(f"after one reload ({r.stdout.strip()}): master RssShmem {after} kB; GET -> {h.get(p.url('/'))[0]}")
    ok = after - before < 16 * 1024
    h.result(ok, f"a reload grows the master's shared memory by {(after - before) // 1024} MiB (bound 16)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
