"""Random documents in many emitter styles (plus random mutations): compare c301746 and HEAD parse trees/problems."""
import random, sys
sys.path.insert(0, "/work/main/docs/reviews/2026-12-04-session-diff/repro")
import yaml
from y_compare_files import old, new, run   # (prints its own file comparison first)
rnd = random.Random(7)
def val(d=0):
    r = rnd.random()
    if d > 4 or r < 0.4:
        return rnd.choice([1, 2.5, "x", "é ü", "a: b", "line1\nline2", "  lead", "#h", "'q'", True, None, "yes", "1:30", "-", "😀", "a\tb", "x" * rnd.randint(0, 120)])
    if r < 0.7:
        return {rnd.choice(["a", "b", "path", "to", "é", "long key " * 3]) + str(i): val(d + 1) for i in range(rnd.randint(0, 4))}
    return [val(d + 1) for _ in range(rnd.randint(0, 4))]
diffs = kinds = 0
for i in range(3000):
    doc = {"listen": ["127.0.0.1:8080"], "routes": [val() for _ in range(rnd.randint(1, 5))]}
    text = yaml.dump(doc, default_flow_style=rnd.choice([None, True, False]), width=rnd.choice([20, 80, 1000]),
                     allow_unicode=rnd.random() < 0.5, default_style=rnd.choice([None, None, '"', "'", "|"]),
                     indent=rnd.choice([2, 4]), line_break=rnd.choice(["\n", "\r\n"]))
    if rnd.random() < 0.5:                              # mutate: delete/insert a character
        p = rnd.randrange(len(text))
        text = text[:p] + rnd.choice(["", ":", "[", "]", "{", "-", " ", "\n", "'", '"', "&a ", "*a", "é"]) + text[p + 1:]
    o, n = run(old, text), run(new, text)
    if o != n:
        # the same lines, message wording aside?
        import re
        ol = re.findall(r"\((\d+), ", o); nl = re.findall(r"\((\d+), ", n)
        if ol != nl or (o.startswith("Map") != n.startswith("Map")):
            kinds += 1
            if kinds <= 8:
                print("LINE/RESULT DIFF\n", repr(text[:400]), "\n old:", o[:250], "\n new:", n[:250])
        diffs += 1
print("differences:", diffs, "with different lines or result:", kinds)
