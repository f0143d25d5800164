"""r09: YAML merge keys (`<<: *base`) are resolved "the way safe_load would" (yamlnodes), but a
key that overrides a merged one (the point of a merge) is reported as a duplicate key, so the
usual way to share route settings is refused."""
import os, subprocess, sys, tempfile
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
d = tempfile.mkdtemp(prefix="ctl-repro-")
path = os.path.join(d, "mpm.yaml")
with open(path, "w") as f:
    f.write('listen: ["127.0.0.1:8000"]\n'
            'routes:\n'
            '  - &api {path: /api/, to: "http://127.0.0.1:9001/", preserve_host: true}\n'
            '  - {<<: *api, path: /v2/api/}\n')
import yaml
print("yaml.safe_load reads:", yaml.safe_load(open(path))["routes"][1])
r = subprocess.run([sys.executable, "-m", "mpm", "configtest", "-c", path], capture_output=True, text=True, cwd=ROOT)
print(f"mpmctl configtest: rc={r.returncode} {(r.stdout + r.stderr).strip()}")
