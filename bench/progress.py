"""The progress display: one line per cell on stderr, with a ticking clock on a terminal."""

from __future__ import annotations

import sys
import threading
import time


class Progress:
    def __init__(self, total: int, stream=sys.stderr) -> None:
        self.total = total
        self.count = 0
        self.stream = stream
        self.tty = stream.isatty()
        self.label = ""
        self.started = 0.0
        self.run_started = time.monotonic()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def say(self, text: str) -> None:
        self._clear()
        self.stream.write(text + "\n")
        self.stream.flush()

    def start(self, label: str) -> None:
        self.count += 1
        self.label = f"[{self.count:>2}/{self.total}] {label}"
        self.started = time.monotonic()
        if self.tty:
            self._stop.clear()
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()

    def done(self, text: str) -> None:
        if self._ticker is not None:
            self._stop.set()
            self._ticker.join()
            self._ticker = None
        took = time.monotonic() - self.started
        self.say(f"{self.label}: {text}  ({took:.1f} s, {time.monotonic() - self.run_started:.0f} s in all)")

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            self.stream.write(f"\r{self.label} ... {time.monotonic() - self.started:.0f} s ")
            self.stream.flush()

    def _clear(self) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
