import sys, time, re
sys.path.insert(0, "/work/main")
from worker.regexlimit import within_limit, RegexTimeout
cases = [
 (rb"x.*y", b"x"*8000),
 (rb"(?i)x.*y", b"x"*8000),
 (rb"(a|aa)*$", b"a"*40+b"!"),
 (rb"(x+x+)+y", b"x"*40),
 (rb"^(a+)+$", b"a"*40+b"!"),
 (rb"a.*b.*c", b"a"*8000),
 (rb"(?:a|b)*c", b"ab"*4000),
 (rb"\s*=\s*$", b" "*8000+b"x"),
 (rb"(.*),(.*),(.*),x", b","*3000),
 (rb"[a-z]+[0-9]", b"a"*8000),
 (rb"(?:a+)+b", b"a"*8000),
 (rb"(\w+\s?)*$", b"aaaa "*20+b"!"),
 (rb"(?i)(?:a|A)*b", b"a"*8000),
]
for pat, s in cases:
    p = re.compile(pat)
    t = time.process_time(); w=time.monotonic()
    try:
        within_limit(p.search, s); r="done"
    except RegexTimeout: r="timeout"
    print(f"{pat!r:28} len={len(s):5} {r:8} cpu={1000*(time.process_time()-t):8.1f} ms", flush=True)
