"""The one exception the loader raises."""

from __future__ import annotations


class ConfigError(Exception):
    """An invalid configuration: every problem found, each as `FILE:LINE: message`, by line.

    `mpmctl configtest` prints `str(err)` and exits 1; a reload that meets one logs it
    and keeps the running generation.
    """

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = list(errors)

    def __str__(self) -> str:
        return "\n".join(self.errors)
