import os
# access log to stdout, a pipe whose reader is slow, then gone: latency, CPU, what is said
import sys, time, socket, os, subprocess, threading, psutil
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from _h import *
be = RawBackend()
p = Proxy(tempfile.mkdtemp(prefix="rev-logs-"), [{"path": "/", "to": be.url}], workers=1)
p.config["log"]["access"] = "-"
p.write_config()
p.stderr = open(os.path.join(p.dir, "stderr.log"), "wb")
p.proc = subprocess.Popen([sys.executable, "-m", "mpm", "start", "-c", p.config_path], stdout=subprocess.PIPE,
                          stderr=p.stderr, cwd=ROOT)
atexit.register(p.stop)
p.seen_pids.add(p.proc.pid); p.wait_ready()
pid = p.worker_pids()[0]
got = [0]; stop=[False]
def slow_reader():
    while not stop[0]:
        d = os.read(p.proc.stdout.fileno(), 512); got[0]+=len(d); time.sleep(0.05)
t = threading.Thread(target=slow_reader, daemon=True); t.start()
s = p.connect(); n=0; worst=0
proc=psutil.Process(pid); c0=proc.cpu_times()
t0=time.monotonic()
while time.monotonic()-t0 < 3:
    a=time.monotonic()
    s.sendall(b"GET /k%d HTTP/1.1\r\nHost: x\r\n\r\n" % n); buf=b""
    while not buf.endswith(b"/k%d" % n): buf += s.recv(65536)
    worst=max(worst, time.monotonic()-a); n+=1
c1=proc.cpu_times()
print("slow reader: answered", n, "worst latency ms", round(worst*1000,1), "read bytes", got[0], "worker cpu", round(c1.user+c1.system-c0.user-c0.system,2))
stop[0]=True; t.join(); p.proc.stdout.close()
worst=0; m=0; t0=time.monotonic()
while time.monotonic()-t0 < 2:
    a=time.monotonic()
    s.sendall(b"GET /g%d HTTP/1.1\r\nHost: x\r\n\r\n" % m); buf=b""
    while not buf.endswith(b"/g%d" % m): buf += s.recv(65536)
    worst=max(worst, time.monotonic()-a); m+=1
print("reader gone: answered", m, "worst ms", round(worst*1000,1), "worker alive", proc.is_running())
time.sleep(1.5)
print("stderr:", p.stderr_text()[-500:])
s.close()
