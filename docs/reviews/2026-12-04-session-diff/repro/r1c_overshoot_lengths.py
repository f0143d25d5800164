import sys, time, re
sys.path.insert(0, "/work/main")
from worker.regexlimit import within_limit, RegexTimeout
for pat, unit in [(rb"\s*=\s*$", b" "), (rb"x.*y", b"x"), (rb"(?:a|b)*c", b"ab")]:
  for n in (8000, 32000, 100000, 200000):
    p = re.compile(pat, re.I); s = unit*(n//len(unit))
    t = time.process_time()
    try: within_limit(p.search, s); r="done"
    except RegexTimeout: r="timeout"
    print(f"{pat!r:16} len={len(s):7} {r:8} cpu={1000*(time.process_time()-t):9.1f} ms", flush=True)
