"""Many balancers with `discover:` (SRV) each hold up to min(slots, 32) address questions in
flight, one UDP socket each, with no bound across balancers: 40 balancers of `slots: 32`
whose targets' A questions go unanswered hold ~1,300 sockets in the master.  Under a common
`LimitNOFILE=1024` (set here with prlimit; the shell's is 20000) the master runs out of
descriptors: the control socket (`mpmctl`) cannot accept, health probes and respawns fail.
HAProxy and nginx multiplex every question over one UDP socket per nameserver."""
import subprocess, sys, time
import psutil
from h import HostileDns, start_proxy

BALANCERS, TARGETS = int(sys.argv[1]) if len(sys.argv) > 1 else 40, 32
d = HostileDns()
d.records = {(f"_http._tcp.b{b}.test", "SRV"): [(5, f"0 1 8080 t{i}.b{b}.test.") for i in range(TARGETS)]
             for b in range(BALANCERS)}
d.silent = {"A", "AAAA"}                   # the address questions are never answered
balancers = {f"b{b}": {"discover": {"dns": f"_http._tcp.b{b}.test", "type": "SRV", "slots": 32,
                                    "resolvers": [d.resolver], "interval": 30, "timeout": 3}}
             for b in range(BALANCERS)}
p = start_proxy([{"path": "/", "to": "balancer://b0/"}], workers=1, balancers=balancers)
master = psutil.Process(p.proc.pid)
subprocess.run(["prlimit", f"--pid={master.pid}", "--nofile=1024:1024"], check=True)
base = master.num_fds()
p.reload()                                 # a reload asks every name again at once, under the new limit
peak, t0 = 0, time.monotonic()
while time.monotonic() - t0 < 3:
    peak = max(peak, master.num_fds())
    time.sleep(0.02)
print(f"{BALANCERS} SRV balancers x {TARGETS} targets, slots 32: master's descriptors {base} before, peak {peak}")
t = time.monotonic()
r = p.mpmctl("status", timeout=15)
print("mpmctl status meanwhile: rc %d in %.2fs %s" % (r.returncode, time.monotonic() - t,
                                                    (r.stderr or "").strip()[:160]))
time.sleep(1)
errs = [line for line in p.error_text().splitlines() if "Too many open files" in line]
print("log lines with 'Too many open files': %d; first: %s" % (len(errs), errs[0][:200] if errs else "-"))
p.stop()
d.stop()
