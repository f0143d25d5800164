"""Loaded by every process of a soak run (PYTHONPATH): in forked workers only, every 2,000
exchanges, the live objects by type (gc.get_objects after a collection), the top 25 and
our own classes, appended to $SOAK_OBJECTS as one JSON line.  Costs ~20 ms each time."""

import gc
import json
import os

EVERY = int(os.environ.get("SOAK_EVERY", "2000"))
OUT = os.environ.get("SOAK_OBJECTS")     # read now: a worker may not keep its environment


def _arm():
    try:
        _patch()
    except Exception as exc:  # noqa: BLE001
        with open(OUT, "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "error": repr(exc)}) + "\n")


def _patch():
    import worker.process as process

    done = process.Worker.exchange_done
    state = {"n": 0}

    def exchange_done(self, exchange):
        done(self, exchange)
        state["n"] += 1
        if state["n"] % EVERY == 0:
            gc.collect()
            counts = {}
            for obj in gc.get_objects():
                kind = type(obj)
                name = f"{getattr(kind, '__module__', '?')}.{kind.__qualname__}"
                counts[name] = counts.get(name, 0) + 1
            ours = {k: v for k, v in counts.items() if k.split(".")[0] in ("worker", "tunnel", "conf", "shm")}
            top = dict(sorted(counts.items(), key=lambda kv: -kv[1])[:25])
            with open(OUT, "a") as f:
                f.write(json.dumps({"pid": os.getpid(), "exchanges": state["n"], "total": sum(counts.values()),
                                    "top": top, "ours": ours}) + "\n")

    process.Worker.exchange_done = exchange_done


if OUT:
    os.register_at_fork(after_in_child=_arm)
