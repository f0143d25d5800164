"""r06: `mpm.watchdog` below the workers' heartbeat interval is accepted, and the watchdog then kills
healthy, idle workers over and over.  Workers write their scoreboard row every 0.5 s
(mpm/supervision.py watchdog docstring); README says "keep it well above a second"; the loader takes
any number >= 0 (conf/loader.py _mpm: sec.number("watchdog", ..., positive=False)).

Steps: mpm.watchdog: 0.2, 2 idle workers, wait 5 s; count "watchdog:" lines in the error log.
PASS when configtest rejects the value, or no healthy worker is killed."""
import time

from _common import HttpBackend, Proxy, verdict, workdir

backend = HttpBackend()
proxy = Proxy(workdir(), [{"path": "/", "to": backend.url + "/"}], workers=2,
              mpm={"workers": 2, "server_limit": 16, "graceful_timeout": 10, "watchdog": 0.2})
proxy.write_config()
check = proxy.mpmctl("configtest")
print(f"configtest: rc {check.returncode}: {(check.stdout + check.stderr).strip()}")
if check.returncode != 0:
    verdict(True, "value rejected")
never_ready = False
try:
    try:
        proxy.start()
    except AssertionError as exc:     # the watchdog killed them before both were ready at once
        never_ready = True
        print("start:", exc)
    time.sleep(5)
    kills = [line for line in proxy.error_text().splitlines() if "watchdog:" in line]
    print(f"{len(kills)} watchdog kills of idle workers in about 5 s; first: {kills[0][22:160] if kills else None}")
finally:
    proxy.stop()
verdict(not kills and not never_ready,
        f"{len(kills)} healthy workers killed" + ("; the workers were never all ready" if never_ready else ""))
