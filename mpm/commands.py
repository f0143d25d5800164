"""What the master does for each request on its control socket (mpm.control carries them):
`status`, `reload`, `upgrade`, `balancer`, `reopen` and `stop`, as `mpmctl` sends them."""

from __future__ import annotations

import json

from mpm import masterlog, reloading, settling, upgrade
from mpm.control import Later
from mpm.status import build_status


def answer(master, request: dict) -> dict | Later:
    """The answer to one request; `Later` for a reload, answered once its generation serves
    alone (mpm.settling)."""
    command = request.get("cmd")
    if command == "status":
        return build_status(master)
    if command == "reload":
        errors = reloading.other_file(master, request.get("config")) or master.reload()
        if errors:
            return {"ok": False, "errors": errors, "generation": master.generation}
        return settling.answer_when_settled(master, master.generation, request.get("wait"))
    if command == "upgrade":
        return upgrade.start(master, request.get("config"))
    if command == "balancer":
        return master.balancers.control(request)
    if command == "reopen":
        return masterlog.reopen(master.workers)
    if command == "stop":
        now = request.get("now", False)
        if not isinstance(now, bool):       # bool("false") is True: an immediate stop nobody asked for
            return {"ok": False, "errors": [f"'now' must be true or false, got {json.dumps(now)[:40]}"]}
        master.stop(now=now)
        return {"ok": True}
    return {"ok": False, "errors": [f"unknown command {command!r}"]}
