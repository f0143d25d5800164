"""Typed reads of YAML nodes that record an error instead of raising.

Every config error must be reported in one pass, so a bad value never stops the
loader: the getter records `(line, message)` on the shared `Errors` and returns
None, and the caller falls back to the default (and skips any cross-check that
would need the value, so one mistake does not cascade into three messages).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable

from .yamlnodes import Map, Node, Scalar, Seq

# What re.compile raises besides re.error for an operator's pattern: a repeat count too large
# (OverflowError), a character the bytes pattern cannot hold (UnicodeEncodeError, a ValueError),
# parentheses nested past the interpreter's recursion limit.
REGEX_ERRORS = (re.error, ValueError, OverflowError, RecursionError)


def path_problem(text: str) -> str | None:
    """Why `text` can never name a file, or None: the kernel takes no NUL byte, and a lone
    surrogate (a YAML "\\ud800" escape) has no bytes on the file system.  Refused here, or
    `open` would raise in the middle of a reload, or the workers would at their start."""
    if "\0" in text:
        return "must not contain a NUL byte"
    try:
        os.fsencode(text)
    except UnicodeEncodeError as exc:
        return f"cannot be encoded for the file system ({exc.reason} at character {exc.start + 1})"
    return None


class Errors:
    """The `(line, message)` problems found so far, and where relative paths start."""

    def __init__(self, base_dir: str):
        self.base_dir = base_dir
        self.items: list[tuple[int, str]] = []

    def add(self, line: int, message: str) -> None:
        self.items.append((line, message))

    def __len__(self) -> int:
        return len(self.items)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for a near miss, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def describe(node: Node) -> str:
    """How a wrong value is shown back: its YAML type, and the value when short."""
    if isinstance(node, Map):
        return "a mapping"
    if isinstance(node, Seq):
        return "a list"
    value = node.value
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"boolean {'true' if value else 'false'}"
    kind = {int: "integer", float: "number", str: "string"}.get(type(value), type(value).__name__)
    shown = repr(value) if isinstance(value, str) else str(value)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"{kind} {shown}"


class Section:
    """One YAML mapping being read: knows its keys, its label for messages, and the error list."""

    def __init__(self, errors: Errors, node: Map, label: str, allowed: Iterable[str] | None):
        """`allowed` None: any key (the keys are names, e.g. balancers or header names)."""
        self.errors = errors
        self.node = node
        self.label = label
        allowed = tuple(allowed) if allowed is not None else tuple(node.entries)
        for key, entry in node.entries.items():
            if key not in allowed:
                where = "top level" if not label else label
                errors.add(entry.key_line, f"unknown key '{key}' in {where}{did_you_mean(key, allowed)}")

    @classmethod
    def of(cls, errors: Errors, node: Node | None, label: str,
           allowed: Iterable[str] | None) -> Section | None:
        """A Section for `node` if it is a mapping (null counts as empty), else record an error."""
        if node is None or (isinstance(node, Scalar) and node.value is None):
            return cls(errors, Map(line=node.line if node else 1), label, allowed)
        if not isinstance(node, Map):
            errors.add(node.line, f"{label} must be a mapping, got {describe(node)}")
            return None
        return cls(errors, node, label, allowed)

    # -- raw access -----------------------------------------------------------------

    def __contains__(self, key: str) -> bool:
        return key in self.node.entries

    def raw(self, key: str) -> Node | None:
        entry = self.node.entries.get(key)
        return entry.value if entry else None

    def line(self, key: str | None = None) -> int:
        """Line of `key`'s value when it is present, else of the mapping itself."""
        entry = self.node.entries.get(key) if key else None
        return entry.value.line if entry else self.node.line

    def first_line(self, *keys: str) -> int:
        """Line of the first of `keys` that is present, for a check involving several."""
        for key in keys:
            if key in self:
                return self.line(key)
        return self.node.line

    def entries(self):
        return self.node.entries.items()

    def key_line(self, key: str) -> int:
        entry = self.node.entries.get(key)
        return entry.key_line if entry else self.node.line

    def name(self, key: str) -> str:
        return f"{self.label}.{key}" if self.label else key

    def error(self, key: str | None, message: str) -> None:
        self.errors.add(self.line(key), message)

    def _bad(self, key: str, expected: str) -> None:
        self.error(key, f"{self.name(key)} must be {expected}, got {describe(self.raw(key))}")

    def _scalar(self, key: str) -> object:
        node = self.raw(key)
        return node.value if isinstance(node, Scalar) else node

    def require(self, key: str) -> bool:
        if key in self:
            return True
        self.errors.add(self.node.line, f"{self.label or 'configuration'} is missing '{key}'")
        return False

    # -- typed getters: value, or None after recording an error (default when absent) --

    def integer(self, key: str, default: int | None, lo: int | None = None, hi: int | None = None):
        if key not in self:
            return default
        value = self._scalar(key)
        expected = "an integer" + _range_text(lo, hi)
        if not isinstance(value, int) or isinstance(value, bool):
            return self._bad(key, expected)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            return self._bad(key, expected)
        return value

    def number(self, key: str, default: float | None, *, positive: bool = True):
        """A duration or similar: int or float (never a bool), > 0, or >= 0 if not `positive`."""
        if key not in self:
            return default
        value = self._scalar(key)
        expected = "a positive number" if positive else "a number >= 0"
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
            return self._bad(key, expected)
        if value < 0 or (positive and value == 0) or value == float("inf"):
            return self._bad(key, expected)
        return float(value)

    def boolean(self, key: str, default: bool | None):
        if key not in self:
            return default
        value = self._scalar(key)
        if not isinstance(value, bool):
            return self._bad(key, "true or false")
        return value

    def string(self, key: str, default: str | None = None, *, empty: bool = False):
        if key not in self:
            return default
        value = self._scalar(key)
        if not isinstance(value, str) or (not empty and not value.strip()):
            return self._bad(key, "a non-empty string" if not empty else "a string")
        return value

    def choice(self, key: str, default: str, choices: Iterable[str]):
        value = self.string(key, default)
        if value is None or value in choices:
            return value
        choices = tuple(choices)
        self.error(key, f"{self.name(key)} must be one of {', '.join(choices)}; "
                        f"got '{value}'{did_you_mean(value, choices)}")
        return None

    def path(self, key: str, default: str | None):
        """A file path, made absolute against the config file's directory."""
        value = self.string(key) if key in self else default
        if value is None:
            return None
        problem = path_problem(value)
        if problem is not None:
            return self.error(key, f"{self.name(key)} {problem}")
        return os.path.normpath(os.path.join(self.errors.base_dir, os.path.expanduser(value)))

    def mapping(self, key: str, label: str, allowed: Iterable[str] | None) -> Section | None:
        if key not in self:
            return None
        return Section.of(self.errors, self.raw(key), label, allowed)

    def sequence(self, key: str) -> list[Node] | None:
        """A list (a single item is not silently promoted: the operator meant one or the other)."""
        node = self.raw(key)
        if node is None or (isinstance(node, Scalar) and node.value is None):
            return []
        if not isinstance(node, Seq):
            return self._bad(key, "a list")
        return node.items


def _range_text(lo: int | None, hi: int | None) -> str:
    if lo is not None and hi is not None:
        return f" from {lo} to {hi}"
    if lo is not None:
        return f" >= {lo}"
    if hi is not None:
        return f" <= {hi}"
    return ""
