import sys, time, re
sys.path.insert(0, "/work/main")
from worker.regexlimit import within_limit, RegexTimeout
for pat, s in [(rb"\s*=", b" "*100000), (rb".*=", b"a"*100000), (rb"[^;]*=", b"a"*100000),
               (rb"\s+$", b" "*100000+b"x"), (rb"a*b", b"a"*100000), (rb".*bot", b"a"*100000),(rb"\d+px", b"1"*100000),
               (rb"(?i)mobile.*safari", b"mobile"*20000)]:
    p = re.compile(pat, re.I)
    t = time.process_time()
    try: within_limit(p.search, s); r="done"
    except RegexTimeout: r="timeout"
    print(f"{pat!r:22} len={len(s):7} {r:8} cpu={1000*(time.process_time()-t):9.1f} ms", flush=True)
