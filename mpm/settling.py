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

import math
import time

from mpm.control import Later
from mpm.readiness import serves

SETTLE_LIMIT = 10.0          # seconds a reload's answer waits for the generations to settle, at most
POLL = 0.02                  # seconds between two looks while an answer waits (the master's TICK is 0.25)
ACCEPTING = ("starting", "ready", "full")
MAX_HELD = 4                 # reload answers held at once (of the control socket's 16 places)


def answer_when_settled(master, generation: int, wait) -> Later | dict:
    """The answer to a reload that started `generation`, sent once it has settled (`settle`).
    `wait`: the seconds the client said it waits (mpmctl's --wait), if it said.  Past
    MAX_HELD answers waiting (a script looping on reload), it comes at once, with a warning:
    each held client takes one of the control socket's places."""
    if len(master.pending_reloads) >= MAX_HELD:
        return _answer(generation, f"not waited for: {MAX_HELD} reload answers wait already")
    within = SETTLE_LIMIT
    seconds = _seconds(wait)
    if seconds > 0:
        within = min(within, max(seconds - 1.0, seconds / 2))     # answered before the client gives up
    later = Later(within)
    master.pending_reloads.append((later, generation, time.monotonic() + within))
    return later


def settle(master) -> None:
    """Send the answers whose generations have settled, or whose time is up (from every
    turn of the master's loop while one waits)."""
    if master.stopping:
        answer_now(master, "the master is stopping")
        return
    now = time.monotonic()
    missing = _not_settled(master)
    due, waiting = [], []
    for entry in master.pending_reloads:
        (waiting if now < entry[2] and missing else due).append(entry)     # (later, generation, deadline)
    master.pending_reloads = waiting            # before sending: a send that raises sends nothing twice
    for later, generation, _ in due:
        later.send(_answer(generation, missing and f"generation {master.generation} (the newest) was not "
                                                   f"serving alone after {later.within:g} s: {missing}"))


def answer_now(master, why: str) -> None:
    """Answer every reload that waits, at once (the master stops, or hands its control socket
    over to the one `mpmctl upgrade` started): closed unanswered, its `mpmctl` would fall back to
    a signal, a second reload."""
    pending, master.pending_reloads = master.pending_reloads, []
    for later, generation, _ in pending:
        later.send(_answer(generation, why))


def _answer(generation: int, warning: str = "") -> dict:
    answer = {"ok": True, "errors": [], "generation": generation}
    if warning:
        answer["warnings"] = [warning]
    return answer


def _seconds(wait) -> float:
    """The client's --wait, if it is a positive finite number of seconds; else 0."""
    if isinstance(wait, bool) or not isinstance(wait, (int, float)):
        return 0.0
    try:
        seconds = float(wait)
    except OverflowError:         # an integer beyond any float: no wait we could keep to
        return 0.0
    return seconds if math.isfinite(seconds) and seconds > 0 else 0.0


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
