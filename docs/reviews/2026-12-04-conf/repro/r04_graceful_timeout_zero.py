"""r04: `mpm.graceful_timeout: 0` is accepted and means "cut every in-flight request at once" on each
reload and stop.  README maps Apache's GracefulShutdownTimeout to mpm.graceful_timeout, and in Apache 0
means no limit (the default: "wait indefinitely"); nginx's worker_shutdown_timeout and HAProxy's
hard-stop-after are unlimited when unset.  `mpmctl import-apache` itself refuses to carry
`GracefulShutdownTimeout 0` over for that reason (mpm/apache/server.py:82); the YAML loader
(conf/loader.py _mpm: sec.number("graceful_timeout", ..., positive=False)) takes it silently.

Steps: graceful_timeout: 0; a backend that answers after 4 s; a request; reload 1 s later.
PASS when the request gets its response (or when configtest rejects 0)."""
import threading
import time

from _common import HttpBackend, Proxy, get, verdict, workdir


def slow(request, body):
    time.sleep(4)
    return 200, [("Content-Type", "text/plain")], b"slow-done"


backend = HttpBackend(slow)
proxy = Proxy(workdir(), [{"path": "/", "to": backend.url + "/"}], workers=1,
              mpm={"workers": 1, "server_limit": 16, "graceful_timeout": 0})
proxy.write_config()
check = proxy.mpmctl("configtest")
print(f"configtest: rc {check.returncode}: {(check.stdout + check.stderr).strip()}")
if check.returncode != 0:
    verdict(True, "0 rejected")
try:
    proxy.start()
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("answer", get(proxy, "/", 15)))
    t0 = time.monotonic()
    thread.start()
    time.sleep(1)
    print("reload:", proxy.reload().stdout.strip())
    thread.join(20)
    answer = result.get("answer", b"")
    print(f"the in-flight request, {time.monotonic() - t0:.1f} s after it was sent: {answer[:40]!r}")
    print("error log:", [line[22:] for line in proxy.error_text().splitlines() if "graceful" in line])
finally:
    proxy.stop()
verdict(answer.startswith(b"HTTP/1.1 200"), "the reload dropped an in-flight request at once")
