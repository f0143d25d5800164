"""worker/faults.py without sockets: which object a raising callback belongs to.

The loop's containment ends the owner of a raising callback through its `abandon()`; a
callback scheduled as `functools.partial(self.method, arg)` (what the tunnel and the
exchange queue with `call_soon` when TLS holds decrypted bytes) belongs to `self` as much as
a bound method does.  Before, those were lambdas, whose owner containment cannot know: a
fault there recycled the whole worker (stop 34's note, "left alone")."""

from __future__ import annotations

from functools import partial

from worker.faults import Faults
from worker.loop import EventLoop


class Owner:
    def __init__(self) -> None:
        self.abandoned = 0

    def resume(self, source, sink) -> None:
        raise RuntimeError(f"injected fault: {source} -> {sink}")

    def abandon(self) -> None:
        self.abandoned += 1


def _contain(callback) -> tuple[Owner, list, list]:
    recycled, logged = [], []
    faults = Faults(EventLoop(), lambda level, text: logged.append(text), lambda: recycled.append(True))
    try:
        callback()
    except RuntimeError as exc:
        faults.contain(exc, callback, None)
    return recycled, logged, faults


def test_a_partial_of_a_bound_method_ends_its_owner_not_the_worker():
    owner = Owner()
    recycled, logged, faults = _contain(partial(owner.resume, "client", "backend"))
    assert owner.abandoned == 1 and recycled == [] and faults.contained == 1
    assert any("internal error in Owner" in line for line in logged), logged


def test_a_lambda_has_no_owner_and_recycles_the_worker():
    owner = Owner()
    recycled, logged, faults = _contain(lambda: owner.resume("client", "backend"))
    assert owner.abandoned == 0 and recycled == [True] and faults.contained == 0
