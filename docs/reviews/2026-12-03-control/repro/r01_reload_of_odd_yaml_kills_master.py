"""r01: a config whose loading raises something other than ConfigError takes the whole server
down on SIGHUP (the master's loop dispatches signal handlers uncontained: it exits and SIGKILLs
its workers), and `mpmctl configtest` / `reload` / `stop` / `status` print a traceback.
Inputs: an explicit YAML tag on a bad value, deep nesting, a NUL in a file path, a huge regex
repetition (each replaces one section of a working config)."""
import os, signal, time
import yaml
from h import get, proxy, write_raw

CASES = {
    "explicit tag": ("mpm", "mpm: {workers: !!int \"x\"}\n"),
    "deep nesting": ("routes", "routes: " + "[" * 3000 + "]" * 3000 + "\n"),
    "NUL in a file path": ("tls", "tls: {session_ticket_key: \"a\\0b\"}\n"),
    "regex repetition": ("routes", "routes: [{match: \"a{99999999999}\", to: \"http://127.0.0.1:9/\"}]\n"),
}
for name, (key, extra) in CASES.items():
    p = proxy()
    doc = dict(p.config)
    doc.pop(key, None)
    write_raw(p, yaml.safe_dump(doc, sort_keys=False) + extra)
    for verb in ("configtest", "reload", "status"):
        r = p.mpmctl(verb)
        out = (r.stdout + r.stderr).strip().splitlines()
        print(f"[{name}] mpmctl {verb}: rc={r.returncode}, {'TRACEBACK ' if 'Traceback' in r.stderr else ''}"
              f"last line: {out[-1][:110] if out else ''}")
    os.kill(p.proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + 4.0          # deep nesting takes ~1.5 s to fail
    while p.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = p.proc.poll() is None
    print(f"[{name}] after SIGHUP: master {'alive' if alive else 'EXITED rc=' + str(p.proc.returncode)}; GET -> {get(p)}")
    p.stop()
