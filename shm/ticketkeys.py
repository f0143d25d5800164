"""The TLS session-ticket keys, in shared memory: written by the master, read by every worker.

One small table (a memfd like the scoreboard, so `mpmctl upgrade` passes it to the next
master and no key is ever written to a file): the keys in use, the first one encrypting
new tickets and every one decrypting, when the current one was made, how many rotations
there were, and where the keys came from (made here, or the operator's key files).

Workers read it from the ticket callback (`conf.openssl`), at every ticket: a sequence
number says whether anything changed since the last look, so a rotation reaches every
worker of every generation at its next handshake without a reload.  The master is the
only writer; a write is bracketed by the sequence number (odd while writing, a seqlock),
and a reader that sees it odd or changed under it keeps the keys it had.
"""

from __future__ import annotations

import logging
import os
import time

from shm.table import LayoutMismatch, SharedTable

SLOTS = 8                    # keys at once: current + previous, or the operator's files
KEY_BYTES = 80               # the largest key (nginx's 80-byte file format)
SOURCES = ("none", "generated", "file")

log = logging.getLogger("mpm.master")


def _columns() -> list:
    return [
        ("seq", "q", 1),            # even: stable; odd: the master is writing
        ("count", "q", 1),          # keys in use (0: none yet)
        ("source", "q", 1),         # SOURCES
        ("rotations", "q", 1),      # automatic rotations since the table was made
        ("rotated", "d", 1),        # wall-clock time the current key was made or loaded
        ("sizes", "q", SLOTS),      # bytes of each key (48 or 80)
        ("material", KEY_BYTES, SLOTS),
    ]


class TicketKeyRing(SharedTable):
    """`make_key` turns raw key bytes into whatever the reader wants (conf.openssl.TicketKey)."""

    key_bytes = KEY_BYTES     # what conf._tickets needs to know of the layout
    slots = SLOTS

    def __init__(self, fd: int | None = None, make_key=bytes):
        try:
            super().__init__("mpm-ticket-keys", _columns(), fd)
        except LayoutMismatch as exc:
            log.warning("%s: new session-ticket keys, so sessions issued before start over", exc)
            super().__init__("mpm-ticket-keys", _columns())
        self.make_key = make_key
        self._seen = -1
        self._keys: list = []

    # -- read (any process) -----------------------------------------------------------------
    def current(self) -> tuple[int, list]:
        """(sequence number, keys made with `make_key`), the first one current."""
        seq = self.seq[0]
        if seq != self._seen and not seq & 1:
            raws = self.raw_keys()
            if self.seq[0] == seq:              # not rewritten while we read
                self._keys = [self.make_key(raw) for raw in raws]
                self._seen = seq
        return self._seen, self._keys

    def raw_keys(self) -> list[bytes]:
        count = min(max(self.count[0], 0), SLOTS)
        return [bytes(self.material[i * KEY_BYTES:i * KEY_BYTES + self.sizes[i]]) for i in range(count)]

    def info(self) -> dict:
        """What `mpmctl status` shows: never the keys themselves."""
        source = self.source[0]
        return {"keys": self.count[0], "source": SOURCES[source] if 0 <= source < len(SOURCES) else "unknown",
                "rotations": self.rotations[0], "key_age": round(time.time() - self.rotated[0], 3)
                if self.count[0] else None}

    # -- write (the master) ----------------------------------------------------------------------
    def install(self, raws: list[bytes], source: str, made: float | None = None) -> None:
        if len(raws) > SLOTS:
            raise ValueError(f"at most {SLOTS} session-ticket keys")
        self.seq[0] += 1                        # odd: readers keep what they have
        for i, raw in enumerate(raws):
            self.sizes[i] = len(raw)
            self.material[i * KEY_BYTES:i * KEY_BYTES + len(raw)] = raw
        for i in range(len(raws), SLOTS):       # a dropped key leaves no trace in the table
            self.sizes[i] = 0
            self.material[i * KEY_BYTES:(i + 1) * KEY_BYTES] = bytes(KEY_BYTES)
        self.count[0] = len(raws)
        self.source[0] = SOURCES.index(source)
        self.rotated[0] = time.time() if made is None else made
        self.seq[0] += 1

    def rotate(self) -> None:
        """A new current key; the current one stays accepted (one period), older ones go."""
        raws = self.raw_keys()
        self.install([os.urandom(KEY_BYTES)] + raws[:1], "generated")
        self.rotations[0] += 1

    @property
    def source_name(self) -> str:
        source = self.source[0]
        return SOURCES[source] if 0 <= source < len(SOURCES) else "unknown"
