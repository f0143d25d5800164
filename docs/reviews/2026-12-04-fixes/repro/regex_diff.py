"""Differential: patterns conf accepts (conf.routes._compile_both) whose search by the worker
(worker.regexlimit.bounded_search: regex module) differs from re's.  Run from a frozen copy:
  cd /tmp/rev-fixes && /work/main/.venv/bin/python /work/main/docs/reviews/2026-12-04-fixes/repro/regex_diff.py
"""
import re, sys, warnings
sys.path.insert(0, ".")
import regex
from conf.routes import _compile_both
from worker.regexlimit import bounded_search

CASES = [
    # (pattern, flags, subjects)
    (rb"^/a\w*+b", 0, [b"/aab"]),
    (rb"\bfoo\b", 0, [b"\xe9foo\xe9", b"afoo"]),
    (rb"(?i)\xc3\xa9+", 0, [b"\xc3\x89"]),
    (rb"(?i)caf\xe9+", 0, [b"CAF\xc9"]),
    (rb"(?x) ^/a [ ]+ b", 0, [b"/a  b", b"/ab"]),
    (rb"(?x) ^/a [#]+ b", 0, [b"/a#b"]),
    (rb"(?x)^/a\ +b", 0, [b"/a b"]),
    (rb"(?x)^/a{1, 2}b", 0, [b"/aab", b"/a{1,2}b"]),
    (rb"(?x)^/a *b", 0, [b"/aaab"]),
    (rb"^/\d+", 0, [b"/\xd9\xa3"]),
    (rb"^\s+x", 0, [b"\x1cx", b"\x85x", b"\xa0x"]),
    (rb"^/api/{id}", 0, [b"/api/{id}", b"/api/x"]),
    (rb"^/api/{session}$", 0, [b"/api/{session}"]),
    (rb"^/x{2i+2d+1s<=4}$", 0, [b"/x{2i+2d+1s<=4}", b"/"]),
    (rb"^/ab{ e<=1 }$", 0, [b"/ab{ e<=1 }"]),
    (rb"^/a{,}$", 0, [b"/aaa", b"/a{,}"]),
    (rb"^/a{,2}$", 0, [b"/aa", b"/a{,2}"]),
    (rb"^/a{ 2}$", 0, [b"/aa", b"/a{ 2}"]),
    (rb"^/a{2,1}$", 0, [b"/aa"]),
    (rb"^/[:alpha:]+$", 0, [b"/abc", b"/:al"]),
    (rb"^/(?:a|ab)(?:c|bcd)(d*)$", 0, [b"/abcd"]),
    (rb"^/(a*)*$", 0, [b"/aa"]),
    (rb"^/(a|b)*?c", 0, [b"/abc"]),
    (rb"\Z", 0, [b"a\n"]),
    (rb"^/x$", re.M, [b"/x\n"]),
    (rb"(?L)^/\w+$", 0, [b"/\xe9"]),
    (rb"^/(?P<n>a)(?P=n)+$", 0, [b"/aa"]),
    (rb"^/\x{41}+", 0, [b"/A"]),
    (rb"^/[\d-z]+$", 0, [b"/5-z"]),
    (rb"^/a{1}{2}$", 0, [b"/aa", b"/a"]),
    (rb"^/a{65536}", 0, [b"/" + b"a" * 65536]),
    (rb"^/\N{LATIN SMALL LETTER A}+", 0, [b"/a"]),
    (rb"^/\u0041+", 0, [b"/A"]),
    (rb"^/[^[]+$", 0, [b"/abc"]),
    (rb"^/[a-z--]+$", 0, [b"/a-"]),
    (rb"^/[&&x]+$", 0, [b"/&x"]),
    (rb"^/[|x|]+$", 0, [b"/|x"]),
    (rb"^/[\w.~~]+$", 0, [b"/a~"]),
    (rb"^/[\[a]+$", 0, [b"/[a"]),
    (rb"[{e}]+", 0, [b"{e}"]),
    (rb"^/(?i:A)b+$", 0, [b"/ab"]),
    (rb"^/(a)|b\1", 0, [b"b"]),
    (rb"^/(?<=a|bc)x", 0, [b"/x"]),
    (rb"(?<=^/|/)x+", 0, [b"/x"]),
    (rb"^/(?>a+)b", 0, [b"/aab"]),
    (rb"^/\G+", 0, [b"/"]),
    (rb"^/(?(1)a|b)+", 0, [b"/b"]),
    (rb"^/(?=a)*a", 0, [b"/a"]),
    (rb"^/a{0}b+", 0, [b"/b"]),
    (rb"^/\x00?", 0, [b"/"]),
    (rb"^/[\s\S]+?", 0, [b"/ab"]),
    (rb"^/(?i)(?:K)+$", re.I, [b"/\xe2\x84\xaa", b"/k"]),
    (rb"^/(?i)s+$", 0, [b"/\xc5\xbf", b"/\x7f"]),
    (rb"^/(\w)\1?$", re.I, [b"/aA"]),
    (rb"^/[[:alpha:]]+$", 0, []),
    (rb"^/a{e}$", 0, []),
    (rb"\\{e}x*", 0, [b"\\{e}x", b"\\x"]),
    (rb"^/x{i}?", 0, []),
]

for pat, flags, subjects in CASES:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = re.compile(pat, flags)
    except re.error as e:
        ref = None
    try:
        p = _compile_both(pat, flags)
        from conf.routes import _FUZZY, may_backtrack
        if may_backtrack(p) and _FUZZY.search(p.pattern):
            verdict = "refused (fuzzy)"
            p = None
        else:
            verdict = "accepted"
    except FutureWarning as e:
        verdict, p = f"refused (FutureWarning: {e})", None
    except (re.error, regex.error) as e:
        verdict, p = f"refused ({type(e).__module__}.error: {e})", None
    line = f"{pat!r:45} re={'ok' if ref else 'ERR'} conf={verdict}"
    diffs = []
    if p is not None:
        try:
            search = bounded_search(p)
        except regex.error as e:
            print(line, f"  WORKER COMPILE FAILS: {e}")
            continue
        for s in subjects:
            a = ref.search(s)
            b = search(s)
            ga = a.group(0) if a else None
            gb = b.group(0) if b else None
            if ga != gb:
                diffs.append(f"{s!r}: re={ga!r} worker={gb!r}")
    elif ref is not None:
        diffs.append("(re accepted it before: now refused)")
    print(line, "  DIFF " + "; ".join(diffs) if diffs else "")
