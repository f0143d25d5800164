"""conf.fallback.control_only_config (mpmctl stop/status on a broken file) on hostile files: returns or None, never raises."""
import os, sys, tempfile
sys.path.insert(0, os.environ.get("REVIEW_ROOT", "/tmp/head-tree"))
from conf.fallback import control_only_config
cases = {"nul": "control: {socket: run/x.sock}\nb: \x00\n", "deep-flow": "a: " + "[" * 1000 + "]" * 1000 + "\n",
         "deep-block": "".join("  " * i + "a:\n" for i in range(200)), "tab": "control:\n\tsocket: x\n",
         "bad-escape": 'control: {socket: "\\ud800"}\n', "two-docs": "control: {socket: a.sock}\n---\nb: 1\n",
         "bom-ok": "\ufeffcontrol: {socket: run/y.sock}\n", "alias-bomb": "a: &a [" + ",".join(["x"] * 10) + "]\n" + "".join(f"a{i}: &a{i} [" + ",".join([f"*a{i-1 if i else ''}"] * 10) + "]\n" for i in range(1, 9)).replace("*a0", "*a") + "control: {socket: run/z.sock}\n",
         "surrogate-in-file": None}
for name, text in cases.items():
    f = os.path.join(tempfile.mkdtemp(), "c.yaml")
    if text is None:
        open(f, "wb").write(b"control: {socket: run/\xed\xa0\x80.sock}\n")
    else:
        open(f, "w", encoding="utf-8").write(text)
    try:
        r = control_only_config(f); print(f"{name:18}", None if r is None else os.path.basename(r.control.socket))
    except BaseException as e:
        print(f"{name:18} RAISED {type(e).__name__}: {e}")
