"""Full parse trees (every node's line) of every YAML file in the repository: c301746 loader vs HEAD."""
import glob, importlib.util, subprocess, sys
sys.path.insert(0, "/work/main")
open("/tmp/old_yamlnodes.py", "w").write(subprocess.run(["git", "-C", "/work/main", "show", "c301746:conf/yamlnodes.py"], capture_output=True, text=True).stdout)
spec = importlib.util.spec_from_file_location("old_yamlnodes", "/tmp/old_yamlnodes.py")
old = importlib.util.module_from_spec(spec); sys.modules["old_yamlnodes"] = old; spec.loader.exec_module(old)
from conf import yamlnodes as new

def run(mod, text):
    try: return repr(mod.parse(text))
    except Exception as e: return f"{type(e).__name__}: {getattr(e, 'problems', e)}"

files = [f for f in glob.glob("/work/main/**/*.y*ml", recursive=True) if "/.venv/" not in f]
same = 0
for f in files:
    text = open(f, encoding="utf-8", errors="replace").read()
    o, n = run(old, text), run(new, text)
    if o == n: same += 1
    else: print("DIFF", f, "\n  old:", o[:300], "\n  new:", n[:300])
print(same, "of", len(files), "identical")
