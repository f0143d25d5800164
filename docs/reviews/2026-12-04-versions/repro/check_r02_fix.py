"""Not a finding: r02's suggested fix checked.  Copies HEAD's tree to /tmp, makes
worker/handover.py read on past ECONNRESET (2 lines), and upgrades OLD_COMMIT -> that tree with
300 WebSockets and 100 keep-alive connections.  PASS when none is lost.
usage: check_r02_fix.py [OLD_COMMIT]   (default f31b70d)"""
import os, shutil, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import WS, Install, KeepAlive, tree  # noqa: E402
OLD = sys.argv[1] if len(sys.argv) > 1 else "f31b70d"
fixed = "/tmp/upgv-trees/head-econnreset-fix"
shutil.rmtree(fixed, ignore_errors=True)
shutil.copytree(tree("HEAD"), fixed, symlinks=True)
path = os.path.join(fixed, "worker/handover.py")
src = open(path).read()
old = "            except (BlockingIOError, InterruptedError):\n                return\n            except OSError:\n                message, fds = b\"\", []"
new = ("            except (BlockingIOError, InterruptedError):\n                return\n"
       "            except ConnectionResetError:    # the sender closed with our answers unread: its records follow\n"
       "                continue\n            except OSError:\n                message, fds = b\"\", []")
assert src.count(old) == 1
open(path, "w").write(src.replace(old, new))
inst = Install(tree(OLD), per_client={"connections": 5000, "tunnels": 5000})
lost = -1
try:
    inst.start()
    wss = [WS(inst.port) for _ in range(300)]
    kas = [KeepAlive(inst.port) for _ in range(100)]
    [w.echo("x") for w in wss], [k.get("/a") for k in kas]
    inst.swap(fixed)
    r = inst.ctl("upgrade", timeout=120)
    lost = 0
    for w in wss:
        try:
            w.echo("y")
        except Exception:
            lost += 1
    for k in kas:
        try:
            k.get("/b")
        except Exception:
            lost += 1
finally:
    killed = inst.cleanup()
print(f"{'PASS' if lost == 0 else 'FAIL'}: {OLD} -> HEAD + ECONNRESET fix: upgrade exit {r.returncode}, lost {lost} of 400; killed at cleanup {killed}")
sys.exit(0 if lost == 0 else 1)
