"""When a reload is over: its generation serves, and no earlier one takes new connections.

A reload forks the new generation and retires the old one at once (mpm.reloading), but the
two overlap for a moment: the new workers are still starting, and each old worker takes new
connections from its slot's listening socket (the new worker of the slot shares it) until its
loop has handled the SIGTERM.  Under CI load that lasted past half a second, and a request sent
right after `mpmctl reload` returned could still be served under the old configuration (the
three 503s of review 2026-12-03-reload #4's test).  So the answer to a reload request waits
until every worker of the new generation says "ready" (or "full") in the scoreboard and no
worker of an earlier one says "starting", "ready" or "full" (worker.process publishes
"stopping" once its acceptor is closed).  That takes tens of milliseconds; once `mpmctl reload`
says "reloaded", every new connection meets the new configuration.

nginx's `-s reload` and `apachectl graceful` return once the signal is sent, and promise
nothing about the connection that follows; systemd's READY=1 after RELOADING=1 comes when the
new generation serves (mpm.readiness).

An old worker that never says so (stopped, stuck) or a slot whose fork failed (its old
worker serves it until the retry: Master.spawn) must not hold the answer for good: it comes
after at most SETTLE_LIMIT seconds, or before the client's own `--wait` runs out, and then
says which workers were not there yet ("warnings").
"""

from __future__ import annotations

import time

from mpm.control import Later
from mpm.readiness import serves

SETTLE_LIMIT = 10.0          # seconds a reload's answer waits for the generations to settle, at most
POLL = 0.02                  # seconds between two looks while an answer waits (the master's TICK is 0.25)
ACCEPTING = ("starting", "ready", "full")


def answer_when_settled(master, generation: int, wait) -> Later:
    """The answer to a reload that started `generation`, sent once it has settled (`settle`).
    `wait`: the seconds the client said it waits (mpmctl's --wait), if it said."""
    within = SETTLE_LIMIT
    if isinstance(wait, (int, float)) and not isinstance(wait, bool) and wait > 0:
        within = min(within, max(wait - 1.0, wait / 2))     # answered before the client gives up
    later = Later(within)
    master.pending_reloads.append((later, generation, time.monotonic() + within))
    return later


def settle(master) -> None:
    """Send the answers whose generations have settled, or whose time is up (from every
    turn of the master's loop while one waits)."""
    now = time.monotonic()
    missing = "" if master.stopping else _not_settled(master)
    waiting = []
    for later, generation, deadline in master.pending_reloads:
        if now < deadline and (missing or later.send is None):
            waiting.append((later, generation, deadline))
        elif later.send is not None:            # (None: its client went before it was held)
            answer = {"ok": True, "errors": [], "generation": generation}
            if missing:
                answer["warnings"] = [f"generation {master.generation} was not alone yet after "
                                      f"{later.within:g} s: {missing}"]
            later.send(answer)
    master.pending_reloads = waiting


def _not_settled(master) -> str:
    """What keeps the current generation from serving alone ("" once nothing does)."""
    current, now = master.generation, time.time()
    serving, old = 0, []
    for row in master.scoreboard.live_rows():
        if row["generation"] == current:
            serving += serves(row, now)
        elif row["generation"] < current and row["state"] in ACCEPTING:
            old.append(str(row["pid"]))
    wanted = master.config.mpm.workers
    said = []
    if serving < wanted:
        said.append(f"{serving} of its {wanted} workers serve")
    if old:
        said.append(f"pid {old[0]} of an earlier generation still takes new connections" if len(old) == 1 else
                    f"pids {', '.join(old)} of earlier generations still take new connections")
    return "; ".join(said)
