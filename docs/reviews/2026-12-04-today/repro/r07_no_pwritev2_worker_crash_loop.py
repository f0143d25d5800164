"""On a Python without pwritev2 -- built against musl before 1.2.5 (python:3.x-alpine up to
Alpine 3.19) or glibc before 2.26 -- `os.RWF_NOWAIT` does not exist (and os.pwritev with flags
raises NotImplementedError).  logsink._writer's `write_nowait` is used exactly in review
2026-12-04-logs #1's case (a non-root container user whose stdout pipe is root's, access log
"-": the default).  Its first write raises AttributeError, which `except OSError` does not
catch, out of LogSink.flush, out of EventLoop.run (the sinks are flushed outside its
`contain`), and the worker dies ("worker crashed"); the master respawns it and the next
access-log flush kills it again: a crash loop, every connection of the worker cut.

Simulated on this glibc Python by removing os.RWF_NOWAIT before mpm starts (MODE=attr), or by
making os.pwritev raise NotImplementedError for flags as CPython does without HAVE_PWRITEV2
(MODE=notimpl).  Kernels before 4.6 (no pwritev2 syscall: ENOSYS, an OSError) take yet
another path: every line is dropped ("cannot write log"), none written (MODE=enosys)."""
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _h import ROOT, Proxy, RawBackend  # noqa: E402

MODE = os.environ.get("MODE", "attr")
PATCH = {
    "attr": "del os.RWF_NOWAIT",
    "notimpl": "real = os.pwritev\n"
               "def pwritev(fd, bufs, off, flags=0):\n"
               "    if flags: raise NotImplementedError('pwritev2 is not available on this platform')\n"
               "    return real(fd, bufs, off)\n"
               "os.pwritev = pwritev",
    "enosys": "import errno\n"
              "def pwritev(fd, bufs, off, flags=0):\n"
              "    raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))\n"
              "os.pwritev = pwritev",
}[MODE]
LAUNCH = f"import os, sys, runpy\n{PATCH}\nsys.argv = ['mpm'] + sys.argv[1:]\nrunpy.run_module('mpm', run_name='__main__')"

be = RawBackend()
p = Proxy(tempfile.mkdtemp(prefix="rev-today-"), [{"path": "/", "to": be.url + "/"}], workers=1)
p.config["log"]["access"] = "-"          # the default: stdout
p.write_config()
r, w = os.pipe()
os.fchown(w, 65534, 65534)               # stdout belongs to another user: /proc/self/fd/1 will not reopen
out = bytearray()
threading.Thread(target=lambda: [out.extend(b) for b in iter(lambda: os.read(r, 65536), b"")], daemon=True).start()
p.stdout = open(os.devnull, "wb")
p.stderr = open(os.path.join(p.dir, "stderr.log"), "wb")
p.proc = subprocess.Popen(["setpriv", "--bounding-set=-dac_override,-dac_read_search",
                           sys.executable, "-c", LAUNCH, "start", "-c", p.config_path],
                          stdout=w, stderr=p.stderr, cwd=ROOT)
os.close(w)
p.seen_pids.add(p.proc.pid)
try:
    p.wait_ready()
    first = p.worker_pids()
    ok = failed = 0
    for i in range(20):
        try:
            s = p.connect(timeout=2)
            s.sendall(b"GET /%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % i)
            ok += b"raw:/%d" % i in s.recv(1000)
            s.close()
        except OSError:
            failed += 1
        time.sleep(0.15)
    time.sleep(1.5)
    status = p.status() or {"workers": []}
    pids = {w["pid"] for w in status["workers"]}
    crashed = p.error_text().count("worker crashed") + p.error_text().count("Traceback")
    print(f"MODE={MODE}: answered {ok}/20, failed {failed}; worker pids {first} -> {sorted(pids)}")
    print("'worker crashed' / tracebacks in the error log:", crashed)
    print("access-log bytes on stdout:", len(out), "| stderr:", open(os.path.join(p.dir, 'stderr.log')).read()[-200:].strip())
    tail = [line for line in p.error_text().splitlines() if "Error" in line][-2:]
    print("error log tail:", tail)
finally:
    p.stop()
    os.close(r)
    be.closing = True
    be.sock.close()
bad = crashed > 0 or set(first) != pids or len(out) == 0
print("REPRODUCED" if bad else "not reproduced")
sys.exit(1 if bad else 0)
