"""`WatchdogSec=` in the unit (or a drop-in) is ignored: systemd passes WATCHDOG_USEC and
WATCHDOG_PID and expects WATCHDOG=1 at least that often, else it kills the service
(SIGABRT) and, with Restart=on-failure, restarts it.  mpm never sends WATCHDOG=1, so a
perfectly healthy server would be killed every WatchdogSec.

The master runs with NOTIFY_SOCKET on a datagram socket we read (as systemd's) and
WATCHDOG_USEC=1000000 (WatchdogSec=1s); WATCHDOG_PID is left out (sd_watchdog_enabled(3):
then any pid)."""
import socket
import time

from h import FastBackend, start_proxy

b = FastBackend()
p = start_proxy([{"path": "/", "to": b.url + "/"}], start=False)
notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
path = p.dir + "/notify.sock"
notify.bind(path)
notify.settimeout(0.1)
p.environ = {**__import__("os").environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"}
p.start()
fields, end = [], time.monotonic() + 3
while time.monotonic() < end:
    try:
        fields += notify.recv(4096).decode().split("\n")
    except TimeoutError:
        pass
print("in 3 s (WatchdogSec=1):", sum(f == "WATCHDOG=1" for f in fields), "WATCHDOG=1;",
      "READY=1" in fields and "READY=1 was sent" or "no READY=1")
p.stop()
notify.close()
