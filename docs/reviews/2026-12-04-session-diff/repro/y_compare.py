"""Compare conf.yamlnodes.parse (HEAD: libyaml CParser + PyYAML Composer) with the c301746
version (pure-Python SafeLoader) on edge inputs; print every difference in result or (line, message)."""
import importlib.util, subprocess, sys
sys.path.insert(0, "/work/main")
old_src = subprocess.run(["git", "-C", "/work/main", "show", "c301746:conf/yamlnodes.py"], capture_output=True, text=True).stdout
open("/tmp/old_yamlnodes.py", "w").write(old_src)
spec = importlib.util.spec_from_file_location("old_yamlnodes", "/tmp/old_yamlnodes.py")
old = importlib.util.module_from_spec(spec); sys.modules["old_yamlnodes"] = old; spec.loader.exec_module(old)
from conf import yamlnodes as new

def run(mod, text):
    try:
        return ("ok", repr(mod.parse(text))[:150])
    except mod.YamlProblem as p:
        return ("problem", p.problems)
    except Exception as e:
        return ("CRASH", f"{type(e).__name__}: {e}"[:200])

CASES = {
 "bom": "\ufefflisten: [a]\n",
 "bom-mid": "listen: [a]\n\ufeffx: 1\n",
 "tab-indent": "routes:\n\t- a\n",
 "tab-after-colon": "a:\t1\n",
 "crlf-error": "a: 1\r\nb: [\r\nc: 2\r\n",
 "crlf-ok": "a: 1\r\nb: 2\r\n",
 "cr-only": "a: 1\rb: [\rc: 2\r",
 "nonascii-then-control": "a: 'ééééééééééééééé'\nb: 'x'\nc: \x01\n",
 "nonascii-lines-then-control": "# é\n" * 40 + "c: \x07\n",
 "nel-linebreak": "a: 1\x85b: [\n",
 "ls-linebreak": "a: 1\u2028b: 2\n",
 "nonascii-then-syntax": "a: 'é'\nb: [1,\nc: 3\n",
 "anchor-merge": "base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n",
 "dup-key": "a: 1\na: 2\n",
 "dup-anchor": "a: &x 1\nb: &x 2\nc: *x\n",
 "undefined-alias": "a: *nope\n",
 "tag-int": "a: !!int x\n",
 "tag-unknown": "a: !foo x\n",
 "tag-local-verbatim": "a: !<tag:yaml.org,2002:str> 5\n",
 "two-docs": "a: 1\n---\nb: 2\n",
 "doc-end": "a: 1\n...\n",
 "doc-start": "---\na: 1\n",
 "yaml12": "%YAML 1.2\n---\na: 1\n",
 "yaml11": "%YAML 1.1\n---\na: 1\n",
 "yaml20": "%YAML 2.0\n---\na: 1\n",
 "tag-directive": "%TAG !e! tag:example.com,2000:\n---\na: !e!foo 1\n",
 "empty": "",
 "comments": "# a\n# b\n",
 "only-doc-marker": "---\n",
 "null-doc": "~\n",
 "deep-block": "".join("  " * i + "a:\n" for i in range(70)) + "  " * 70 + "1\n",
 "deep-flow-100": "a: " + "[" * 100 + "]" * 100 + "\n",
 "deep-flow-1000": "a: " + "[" * 1000 + "]" * 1000 + "\n",
 "long-scalar": "a: " + "x" * 200000 + "\n",
 "long-key": "? " + "k" * 2000 + "\n: 1\n",
 "implicit-long-key": "k" * 1100 + ": 1\n",
 "surrogate-escape": 'a: "\\ud800"\n',
 "nul": "a: 1\nb: \x00\n",
 "del": "a: 1\nb: \x7f\n",
 "c1": "a: 1\nb: \x80\n",
 "nonchar-fffe": "a: 1\nb: \ufffe\n",
 "astral": "a: '\U0001F600'\n",
 "unclosed-quote": "a: 1\nb: \"abc\nc: 2\n",
 "unclosed-quote-eof": "a: 1\nb: 'abc\n",
 "bad-indent": "a:\n  b: 1\n c: 2\n",
 "colon-in-plain": "a: b: c\n",
 "flow-in-block": "a: [1, 2\nb: 3\n",
 "bool-yes": "a: yes\n",
 "base60": "a: 1:30\n",
 "octal": "a: 0o17\n",
 "int-underscore": "a: 1_000\n",
 "float-inf": "a: .inf\n",
 "timestamp": "a: 2001-12-14\n",
 "binary": "a: !!binary aGVsbG8=\n",
 "set": "a: !!set {x}\n",
 "omap": "a: !!omap [x: 1]\n",
 "python-tag": "a: !!python/object:os.system x\n",
 "complex-key": "? [a, b]\n: 1\n",
 "merge-list": "x: &x {a: 1}\ny: &y {b: 2}\nz:\n  <<: [*x, *y]\n",
 "merge-bad": "z:\n  <<: 5\n",
 "alias-cycle": "a: &a [*a]\n",
 "reserved-at": "a: @x\n",
 "backtick": "a: `x\n",
 "percent-plain": "a: %x\n",
 "trailing-garbage": "a: 1\n]\n",
 "block-scalar": "a: |\n  x\n  y\nb: >-\n  z\n",
 "block-scalar-bad-indent": "a: |\n    x\n  y\nb: 1\n",
 "escape-x": 'a: "\\x41\\u00e9\\U0001F600"\n',
 "escape-bad": 'a: "\\q"\n',
 "empty-key": ": 1\n",
 "null-key": "~: 1\n",
 "int-key": "1: a\n",
 "anchor-on-key": "&k a: 1\nb: *k\n",
 "directive-after-content": "a: 1\n%YAML 1.1\n---\nb: 2\n",
 "utf16-bom-text": "\ufeff\ufeffa: 1\n",
 "zero-width": "a\u200b: 1\n",
 "control-in-comment": "# \x01\na: 1\n",
 "vt-ff": "a: 1\x0bb\n",
 "ff": "a: 1\n\x0c\nb: 2\n",
 "plain-multiline": "a: x\n  y\nb: 1\n",
 "flow-map-dup": "{a: 1, a: 2}\n",
 "quoted-key-dup": "a: 1\n'a': 2\n",
 "tab-in-flow": "a: [1,\t2]\n",
 "tab-before-comment": "a: 1\t# c\n",
 "emoji-then-error": "a: '😀😀😀'\nb: [\n",
}
diffs = 0
for name, text in CASES.items():
    o, n = run(old, text), run(new, text)
    if o != n:
        diffs += 1
        print(f"== {name}\n   old: {o}\n   new: {n}")
print(f"{diffs} differences of {len(CASES)} cases")
