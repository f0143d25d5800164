"""r02: a 'billion laughs' YAML (anchors of lists of aliases) is expanded node by node by
conf/yamlnodes._walk: each level multiplies the work by 10.  Six levels in 400 bytes hold the
master ~6 s and ~250 MB on a reload (seven: ~60 s and ~2.5 GB, nine: hours); meanwhile mpmctl
gets no answer and a dead worker is not replaced.  (Kept at six levels: a shared machine.)"""
import os, signal, time
import psutil
import yaml
from h import get, proxy, write_raw

LEVELS = 6
p = proxy(workers=1)
doc = dict(p.config)
lines = ['x0: &a0 ["x","x","x","x","x","x","x","x","x","x"]']
lines += [f"x{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, LEVELS)]
text = "\n".join(lines) + "\n" + yaml.safe_dump(doc, sort_keys=False)
write_raw(p, text)
print(f"config: {len(text)} bytes, {LEVELS} levels of 10 aliases")
master = psutil.Process(p.proc.pid)
rss0 = master.memory_info().rss
worker = p.worker_pids()[0]
t0 = time.monotonic()
os.kill(p.proc.pid, signal.SIGHUP)
time.sleep(0.2)
os.kill(worker, signal.SIGKILL)      # a crash while the master is busy
peak, replaced = rss0, None
while time.monotonic() - t0 < 60:
    peak = max(peak, master.memory_info().rss)
    pids = [c.pid for c in master.children()]
    if replaced is None and any(pid != worker for pid in pids):
        replaced = time.monotonic() - t0
        break
    time.sleep(0.05)
print(f"master RSS {rss0 >> 20} MB -> peak {peak >> 20} MB; a worker killed at 0.2 s was replaced after "
      f"{replaced:.1f} s" if replaced else "never replaced in 60 s")
print("reload answer in the error log:", [l for l in p.error_text().splitlines() if "reload" in l][-1:])
print("GET ->", get(p))
p.stop()
