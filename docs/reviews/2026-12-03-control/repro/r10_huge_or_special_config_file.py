"""r10: the config file is read whole, whatever its size or kind: a 9 MB file (comments) holds
the master ~4 s per reload (PyYAML reads ~2 MB/s here), and `-c /dev/zero` makes configtest
read until memory runs out (stopped here at 1 GB by RLIMIT_AS)."""
import os, resource, subprocess, sys, tempfile, time
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
d = tempfile.mkdtemp(prefix="ctl-repro-")
path = os.path.join(d, "mpm.yaml")
with open(path, "w") as f:
    f.write('listen: ["127.0.0.1:8000"]\n')
    f.write("".join(f"# padding line {i} " + "y" * 70 + "\n" for i in range(100_000)))
t = time.monotonic()
r = subprocess.run([sys.executable, "-m", "mpm", "configtest", "-c", path], capture_output=True, text=True, cwd=ROOT)
print(f"{os.path.getsize(path) >> 20} MB file: configtest rc={r.returncode} in {time.monotonic() - t:.1f} s")
t = time.monotonic()
r = subprocess.run([sys.executable, "-m", "mpm", "configtest", "-c", "/dev/zero"], capture_output=True, text=True,
                   cwd=ROOT, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)), timeout=60)
print(f"-c /dev/zero: configtest rc={r.returncode} in {time.monotonic() - t:.1f} s: {r.stderr.strip().splitlines()[-1][:100]}")
