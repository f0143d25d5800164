"""The admin listener over the master's life, and what it serves.

    /metrics         Prometheus text format (OpenMetrics when asked for): mpm/metrics.py
    /server-status   the status page, `?auto` machine-readable: mpm/status_page.py
    /healthz         200 or 503 with a one-line JSON reason: mpm/readiness.py
    /                links to the above

Its socket comes from systemd (socket activation), from the master we replace (`mpmctl
upgrade` passes it like the listeners), or is bound here.  A reload that moves it binds
the new address before anything else changes (`prepare`), so a failure refuses the reload
and leaves everything as it was; one that only changes `allow` applies at once.
"""

from __future__ import annotations

import json
import logging
import socket

from mpm import status_page
from mpm.admin import AdminServer, bind_admin

log = logging.getLogger("mpm.master")

INDEX = b"""<!doctype html><title>mpm-proxy admin</title>
<p><a href="/server-status">/server-status</a> (<a href="/server-status?auto">?auto</a>)
&middot; <a href="/metrics">/metrics</a> &middot; <a href="/healthz">/healthz</a></p>
"""


class AdminSite:
    def __init__(self, master, selector, inherited: dict | None = None, activated: dict | None = None):
        self.master = master
        self.selector = selector
        self.server: AdminServer | None = None
        self._pending: socket.socket | None = None
        self._inherited = inherited          # {"address": [host, port], "fd": n} from the master we replace
        self._activated = activated if activated is not None else {}   # address -> socket systemd passed

    # == lifecycle ===================================================================================
    def prepare(self, admin) -> None:
        """Hold a socket for `admin` (conf.Admin or None) if it is not the one we serve on;
        raises OSError when it cannot be bound."""
        self._pending = None
        if admin is None or (self.server is not None and self.server.config.address == admin.address):
            return
        # prometheus_client, imported here rather than at the top, is 50 ms of a master's start
        # (of about 320): only a master with an admin listener pays it, before it serves.
        import mpm.metrics  # noqa: F401
        self._pending = self._socket_for(admin)

    def _socket_for(self, admin) -> socket.socket:
        inherited, self._inherited = self._inherited, None
        if inherited is not None:
            sock = socket.socket(fileno=inherited["fd"])
            if tuple(inherited["address"]) == admin.address:
                return sock
            sock.close()                     # the old master's address: not ours any more
        passed = self._activated.pop(admin.address, None)
        return passed if passed is not None else bind_admin(admin)

    def abandon(self) -> None:
        """The reload failed elsewhere: give back what `prepare` bound."""
        if self._pending is not None:
            self._pending.close()
            self._pending = None

    def commit(self, admin) -> None:
        if admin is None:
            if self._inherited is not None:          # the master we replace had one; we have none
                socket.socket(fileno=self._inherited["fd"]).close()
                self._inherited = None
            if self.server is not None:
                log.info("admin listener %s closed", self.server.config)
                self.close()
            return
        if self._pending is not None:
            self.close()
            self.server = AdminServer(self.selector, self._pending, admin, self.handle)
            self._pending = None
            log.info("admin listener on %s (allow %s)", admin, ", ".join(str(n) for n in admin.allow))
        else:
            self.server.config = admin

    def export(self) -> dict | None:
        if self.server is None:
            return None
        return {"address": list(self.server.config.address), "fd": self.server.sock.fileno()}

    def expire(self, now: float) -> None:
        if self.server is not None:
            self.server.expire(now)

    def close(self) -> None:
        """Stop serving; the socket closes in this process only (a successor may hold it too)."""
        if self.server is not None:
            self.server.close()
            self.server = None

    def hand_over(self) -> None:
        """`mpmctl upgrade` is done: the new master accepts alone; we answer what we accepted."""
        if self.server is not None:
            self.server.stop_accepting()

    def close_in_child(self) -> None:
        """In a forked worker: the admin socket is the master's alone."""
        if self.server is not None:
            for client in list(self.server.clients):
                client.close()
            self.server.sock.close()

    # == pages =======================================================================================
    def handle(self, request) -> tuple[int, str, bytes]:
        master = self.master
        if request.path == "/metrics":
            from mpm import metrics  # imported by prepare() already: a lookup in sys.modules
            body, content_type = metrics.render(master, request.headers.get("accept", ""))
            return 200, content_type, body
        if request.path == "/server-status":
            content_type, body = status_page.render(master, request.query)
            return 200, content_type, body
        if request.path == "/healthz":
            code, reason = master.readiness.health(master)
            body = json.dumps({"status": "ok" if code == 200 else "unavailable", "reason": reason,
                               "generation": master.generation}) + "\n"
            return code, "application/json", body.encode()
        if request.path == "/":
            return 200, "text/html; charset=utf-8", INDEX
        return 404, "text/plain", b"not found: /metrics, /server-status, /healthz\n"
