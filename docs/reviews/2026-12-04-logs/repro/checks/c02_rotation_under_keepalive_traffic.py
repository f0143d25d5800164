import os
# rotation by rename+reload under keep-alive traffic: count client responses vs log lines in both files
import sys, time, socket, threading, os
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from _h import *
be = RawBackend()
p = proxy([{"path": "/", "to": be.url}], workers=2)
stop = False
done = [0]*4
def client(i):
    s = p.connect(timeout=5); buf=b""
    n=0
    while not stop:
        try:
            s.sendall(b"GET /c%d/%d HTTP/1.1\r\nHost: x\r\n\r\n" % (i, n))
            while b"raw:/c" not in buf or not buf.endswith(b"/%d" % n):
                d = s.recv(65536)
                if not d: raise ConnectionError("closed")
                buf += d
            buf=b""; n+=1; done[i]+=1
            time.sleep(0.005)
        except (ConnectionError, OSError) as e:
            print("client", i, "error", e, "after", n); s.close(); s = p.connect(timeout=5); buf=b""
    s.close()
ts=[threading.Thread(target=client,args=(i,)) for i in range(4)]
[t.start() for t in ts]
time.sleep(1)
os.rename(p.access_log, p.access_log + ".1")
r = p.reload(); print("reload", r.returncode, r.stdout.strip(), r.stderr.strip())
time.sleep(1.5)
os.rename(p.access_log, p.access_log + ".2")
r = p.reload(); print("reload", r.returncode)
time.sleep(1)
stop=True; [t.join() for t in ts]
time.sleep(2.5)
tot = sum(done)
files = [p.access_log + s for s in (".1", ".2", "")]
lines=[]
for f in files:
    try: L=open(f).read().splitlines()
    except FileNotFoundError: L=[]
    print(f, len(L)); lines+=L
print("responses", tot, "backend requests", len(be.requests), "log lines", len(lines))
reqs=[l.split('"')[1] for l in lines]
import collections
dup=[k for k,v in collections.Counter(reqs).items() if v>1]
print("dups", dup[:5])
p.stop()
lines2=[]
for f in files:
    try: lines2+=open(f).read().splitlines()
    except FileNotFoundError: pass
print("after stop log lines", len(lines2))
