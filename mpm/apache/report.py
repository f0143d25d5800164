"""What an import tells the operator: hard errors (nothing is written), and the notes on
stderr about what was not translated or translated with a difference.

    FILE:LINE: not translated: <directive> (<why>)
    FILE:LINE: warning: <what differs or looks wrong>

Each note knows whether dropping it changes where a request goes (a `routing` note); the
exit status is 0 unless one does, or, with --strict, unless there is any note at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class ApacheConfigError(Exception):
    """The httpd configuration is broken (httpd would refuse it): `FILE:LINE: message` lines."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = list(errors)


@dataclass(frozen=True)
class Note:
    where: str        # FILE:LINE
    kind: str         # "not translated" | "warning"
    text: str
    routing: bool     # dropped or changed something that decides where a request goes

    def __str__(self) -> str:
        return f"{self.where}: {self.kind}: {self.text}"


@dataclass
class Report:
    notes: list[Note] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _seen: set = field(default_factory=set)

    def dropped(self, where: str, directive: str, why: str, routing: bool = False) -> None:
        self._add(Note(where, "not translated", f"{directive} ({why})", routing))

    def warn(self, where: str, text: str, routing: bool = False) -> None:
        self._add(Note(where, "warning", text, routing))

    def error(self, where: str, message: str) -> None:
        line = f"{where}: {message}"
        if line not in self.errors:
            self.errors.append(line)

    def _add(self, note: Note) -> None:
        key = (note.where, note.kind, note.text)
        if key not in self._seen:       # a main-server directive is seen once per virtual host
            self._seen.add(key)
            self.notes.append(note)

    def raise_errors(self) -> None:
        if self.errors:
            raise ApacheConfigError(self.errors)

    def exit_status(self, strict: bool) -> int:
        if strict:
            return 1 if self.notes else 0
        return 1 if any(n.routing for n in self.notes) else 0
