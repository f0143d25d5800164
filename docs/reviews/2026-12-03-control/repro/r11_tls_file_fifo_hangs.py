"""r11 (found while fixing): a certificate, key, CA or ticket-key path naming a FIFO makes the
loader's readability check open() it, which waits for a writer forever: configtest never
returns, and a reload would hold the master's loop for good."""
import os, subprocess, sys, tempfile, time
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))
d = tempfile.mkdtemp(prefix="ctl-repro-")
os.mkfifo(os.path.join(d, "cert.pem"))
path = os.path.join(d, "mpm.yaml")
with open(path, "w") as f:
    f.write('listen: [{address: "127.0.0.1:8443", tls: {cert: cert.pem, key: cert.pem}}]\n')
t = time.monotonic()
try:
    r = subprocess.run([sys.executable, "-m", "mpm", "configtest", "-c", path], capture_output=True, text=True,
                       cwd=ROOT, timeout=5)
    print(f"configtest rc={r.returncode} in {time.monotonic() - t:.1f} s: {(r.stdout + r.stderr).strip()[:160]}")
except subprocess.TimeoutExpired:
    print("configtest still waiting after 5 s (killed)")
