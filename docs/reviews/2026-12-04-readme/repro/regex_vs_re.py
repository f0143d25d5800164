"""re and regex (VERSION0, what worker/regexlimit.py compiles) read some patterns re accepts
differently: POSIX classes and fuzzy-match counts.  conf/routes.py compiles with both and
refuses only what regex cannot compile."""
import re, warnings
import regex
warnings.simplefilter("ignore")
for p, s in [(rb"^/p[[:alpha:]]+$", b"/pabc"), (rb"^/p[[:alpha:]]+$", b"/pa]"),
             (rb"^/(abc){e<=1}$", b"/abd"), (rb"^/(abc){e<=1}$", b"/abc{e<=1}")]:
    print(p, s, "re:", bool(re.search(p, s)), " regex:", bool(regex.search(p, s, timeout=0.01)))
