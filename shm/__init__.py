"""The tables in shared memory: made by the master before it forks, mapped by every worker.

    shm.table       the machinery: a memfd cut into named columns, with a layout check
    shm.scoreboard  one row per worker process (Apache's scoreboard)
    shm.members     one row per balancer member, static or found in DNS, with per-worker counters
    shm.metrics     what /metrics counts: a row per worker process plus the counts of those gone

Both `mpm` (which owns and writes them) and `worker` (which reads them and writes only its
own row or counter cell) import this package; it imports nothing of ours, so the rule that
dependencies point one way (conf and tunnel and shm below, worker above them, mpm on top)
holds.
"""
