"""Reader errors (a control character) after BOM / multibyte / CRLF / long text: is FILE:LINE right?"""
import os, sys, tempfile
sys.path.insert(0, "/work/main")
from conf import load_config, ConfigError
cases = {
 "bom+multibyte": "\ufeff" + "# éé\n" * 3 + "x: \x07\n",                 # control char on line 4
 "crlf+multibyte": "# 😀😀\r\n" * 5 + "x: \x01\r\n",                        # line 6
 "long multibyte (100 KB)": "# " + "é" * 60 + "\n" * 1 + ("# " + "ü" * 50 + "\n") * 1500 + "x: \x02\n",   # line 1502
 "NEL inside comment then ctl": "# a\x85b\n" * 3 + "x: \x03\n",          # line 4 in an editor
 "LS in comment then ctl": "# a\u2028b\n" * 3 + "x: \x03\n",              # line 4
 "NEL then syntax error": "# a\x85b\n" * 3 + "x: [\n",                    # line 4/5
}
for name, text in cases.items():
    want = text.count("\n", 0, text.index("x:")) + 1
    d = tempfile.mkdtemp(); f = os.path.join(d, "c.yaml"); open(f, "w", encoding="utf-8", newline="").write(text)
    try:
        load_config(f); got = "loaded"
    except ConfigError as e:
        got = str(e).replace(f, "FILE")[:160]
    print(f"{name:28} want line {want}: {got}")
