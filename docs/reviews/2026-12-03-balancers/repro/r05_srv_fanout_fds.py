"""An SRV answer with many targets (no glue) makes the master open one UDP socket per target
at once (`discovery.Lookup._on_answer` asks every target's address together), whatever
`discover.slots` keeps.  1,500 targets (a 64 KiB answer over TCP holds ~2,000) whose address
questions go unanswered hold 1,500 sockets in the master for `timeout`; under a common
`LimitNOFILE=1024` the master has no descriptor left meanwhile: the control socket (`mpmctl`),
health probes and worker respawns fail.  Here the master's soft limit is lowered to 1024 with
prlimit (the shell's is 20000)."""
import os, resource, subprocess, sys, time
import psutil
from h import ROOT, start_proxy
sys.path.insert(0, os.path.join(ROOT, "tests"))
from test_dns_hostile import HostileDns  # noqa: E402

N = 1500
dns = HostileDns()
dns.records = {("_http._tcp.app.test", "SRV"): [(5, f"0 1 8080 t{i}.app.test.") for i in range(N)]}
dns.silent = {"A"}                       # the address questions are never answered
p = start_proxy([{"path": "/", "to": "balancer://app/"}], workers=1,
                balancers={"app": {"discover": {"dns": "_http._tcp.app.test", "type": "SRV", "slots": 4,
                                                "resolvers": [dns.resolver], "interval": 30, "timeout": 3}}})
master = psutil.Process(p.proc.pid)
subprocess.run(["prlimit", f"--pid={master.pid}", "--nofile=1024:1024"], check=True)
peak, t0 = 0, time.monotonic()
while time.monotonic() - t0 < 2.5:
    peak = max(peak, master.num_fds())
    time.sleep(0.02)
print("slots 4, SRV targets %d: master's open descriptors peaked at %d" % (N, peak))
r = p.mpmctl("status", timeout=10)
print("mpmctl status meanwhile: rc %d %s" % (r.returncode, (r.stderr or r.stdout).strip()[:160]))
time.sleep(1.5)
errs = [line for line in p.error_text().splitlines() if "Too many open files" in line]
print("log lines with 'Too many open files': %d; first: %s" % (len(errs), errs[0][:200] if errs else "-"))
dns.stop()
