"""r06: a burst of SIGHUPs (a config-management tool notifying once per changed file, a
logrotate postrotate per log) is not coalesced: each queued signal is a full reload, a new
generation forked and the previous one retired at once.  nginx sets one flag
(ngx_reconfigure) per loop turn, so a burst is one reload."""
import os, signal, time
import psutil
import sys, os; sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from h import proxy

p = proxy(workers=2)
gen0 = p.status()["generation"]
master = psutil.Process(p.proc.pid)
cpu0 = sum(master.cpu_times()[:2])
for _ in range(10):
    os.kill(p.proc.pid, signal.SIGHUP)
time.sleep(3.0)
s = p.status()
print(f"10 SIGHUPs sent at once: generation {gen0} -> {s['generation']}; master CPU {sum(master.cpu_times()[:2]) - cpu0:.2f} s; "
      f"{p.error_text().count('reloaded: generation')} 'reloaded' lines")
p.stop()
