"""httpd's configuration syntax, character for character (server/util.c, server/core.c).

- A line ending in a backslash right before the newline continues on the next one (the
  backslash and the newline are removed, nothing is inserted).
- Leading and trailing white space is dropped; a line that then starts with `#` is a
  comment (a trailing `# ...` after a directive is not: it is more arguments).
- `${NAME}` is replaced on the whole line before it is split into words: a `Define`d
  variable first, then the environment; an undefined one stays as written (httpd warns,
  except for names with a ':', which are left alone silently: `${map:key}` is mod_rewrite's).
- Words are split at white space; a word may be quoted with `"` or `'`, inside which a
  backslash escapes the quote character or a backslash (ap_getword_conf).
- mod_rewrite splits its own arguments (parseargline): quotes group, nothing is unescaped,
  and a backslash before white space keeps both in the word.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class LogicalLine:
    line: int      # the first physical line
    text: str      # trimmed, continuations joined


def logical_lines(text: str) -> Iterator[LogicalLine]:
    """The lines httpd reads from `text`, with the number of the physical line each starts on."""
    number, start, pending = 0, 0, ""
    for physical in text.split("\n"):
        number += 1
        if not pending:
            start = number
        body = physical[:-1] if physical.endswith("\r") else physical
        if body.endswith("\\"):
            pending += body[:-1]
            continue
        yield LogicalLine(start, (pending + body).strip())
        pending = ""
    if pending:
        yield LogicalLine(start, pending.strip())


def resolve_env(text: str, defined: dict[str, str], undefined: Callable[[str], None]) -> str:
    """`${NAME}` -> its Define'd value or environment value (ap_resolve_env)."""
    if "$" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        if text.startswith("${", i):
            end = text.find("}", i + 2)
            if end >= 0:
                name = text[i + 2:end]
                value = defined.get(name, os.environ.get(name))
                if value is None:
                    if ":" not in name:
                        undefined(name)
                    value = text[i:end + 1]
                out.append(value)
                i = end + 1
                continue
        out.append(text[i])
        i += 1
    return "".join(out)


def getword(text: str) -> tuple[str, str]:
    """(first word, the rest after its trailing white space), httpd's ap_getword_conf."""
    i, n = 0, len(text)
    while i < n and text[i].isspace():
        i += 1
    if i == n:
        return "", ""
    quote = text[i]
    if quote in "\"'":
        j = i + 1
        while j < n and text[j] != quote:
            j += 2 if text[j] == "\\" and j + 1 < n and text[j + 1] in (quote, "\\") else 1
        word = _unescape(text[i + 1:j], quote)
        j += 1 if j < n else 0
    else:
        j = i
        while j < n and not text[j].isspace():
            j += 1
        word = _unescape(text[i:j], "")
    while j < n and text[j].isspace():
        j += 1
    return word, text[j:]


def _unescape(word: str, quote: str) -> str:
    out, i = [], 0
    while i < len(word):
        if word[i] == "\\" and i + 1 < len(word) and (word[i + 1] == "\\" or (quote and word[i + 1] == quote)):
            i += 1
        out.append(word[i])
        i += 1
    return "".join(out)


def words(text: str) -> list[str]:
    """Every word of an argument string (ap_getword_conf until the end)."""
    result = []
    while text.strip():
        word, text = getword(text)
        result.append(word)
    return result


def rewrite_words(text: str) -> list[str]:
    """mod_rewrite's own split (parseargline): quotes group but are not unescaped."""
    result, i, n = [], 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return result
        quote = text[i] if text[i] in "\"'" else ""
        i += 1 if quote else 0
        start = i
        while i < n:
            if (not quote and text[i].isspace()) or (quote and text[i] == quote):
                break
            i += 2 if text[i] == "\\" and i + 1 < n and text[i + 1].isspace() else 1
        result.append(text[start:min(i, n)])
        i += 1


def section_args(args: str) -> str | None:
    """The arguments of `<Name args>`, without the closing '>'; None when it is missing."""
    stripped = args.rstrip()
    if not stripped.endswith(">"):
        return None
    return stripped[:-1].strip()
