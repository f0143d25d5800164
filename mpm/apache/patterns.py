"""Regular expressions for routes: httpd's matching rules written as Python `re` patterns.

mpm-proxy matches a route's `match` with `re.search` on the raw request path and fills
`$N` from its groups; a `path` route is a plain byte prefix.  httpd's rules are not all
plain prefixes, so some ProxyPass lines become patterns here:

- ProxyPass /app (no trailing slash) matches /app and /app/x but not /apple: a prefix
  must end on a path segment (mod_proxy's alias_match);
- a `!` exclusion stops every later rule for its paths: later routes get a negative
  lookahead at the start (`^(?!...)`), built from the exclusion with its groups made
  non-capturing so the later route's `$N` keep their meaning.
"""

from __future__ import annotations

import re

import regex

_INLINE_FLAGS = re.compile(r"^\(\?([aiLmsux]+)\)")


class PatternError(ValueError):
    """A pattern this translation cannot rewrite (the message says why)."""


def literal(text: str) -> str:
    """`text` as a regex matching itself; '/' and '-' stay readable."""
    return re.escape(text).replace("\\/", "/").replace("\\-", "-")


POSIX_CLASSES = {"alpha": "a-zA-Z", "digit": "0-9", "alnum": "a-zA-Z0-9", "upper": "A-Z", "lower": "a-z",
                 "xdigit": "0-9A-Fa-f", "space": r" \t\n\r\f\v", "blank": r" \t", "word": r"\w",
                 "punct": r"!-/:-@\[-`{-~", "cntrl": r"\x00-\x1f\x7f", "print": r"\x20-\x7e",
                 "graph": r"\x21-\x7e", "ascii": r"\x00-\x7f"}
_PCRE_ONLY = re.compile(r"\\.|\[:(\^?)([a-z]+):\]|\(\?<(?=[A-Za-z_])|\(\?'([A-Za-z_]\w*)'|\{(?!\d+(?:,\d*)?\})")


def from_pcre(pattern: str) -> str:
    """httpd's regexes are PCRE; Python's `re` reads a few PCRE spellings differently or not at
    all.  Rewritten here: POSIX classes in a bracket (`[[:digit:]]`, which `re` takes as the
    characters '[:dgit' then ']': silently another pattern), named groups `(?<name>...)` and
    `(?'name'...)`, `\\z`, and a "{" that starts no count (`/api/{id}`: PCRE's text, but the
    regex module mpm-proxy's workers search with would read a fuzzy-match constraint there, or
    refuse it).  A negated POSIX class or an unknown one raises PatternError."""
    def sub(m: re.Match) -> str:
        text = m.group(0)
        if text == "\\z":
            return "\\Z"
        if text == "{":
            return "\\{"
        if text.startswith("\\"):
            return text
        if text.startswith("[:"):
            if m.group(1) or m.group(2) not in POSIX_CLASSES:
                raise PatternError(f"'{pattern}' uses the POSIX class {text}, which the import cannot rewrite")
            return POSIX_CLASSES[m.group(2)]
        return f"(?P<{m.group(3)}>" if m.group(3) else "(?P<"
    return _PCRE_ONLY.sub(sub, pattern)


def read(pattern: str) -> tuple[str, str | None]:
    """(the Python spelling of httpd's regex `pattern`, why it cannot be used or None)."""
    try:
        converted = from_pcre(pattern)
    except PatternError as why:
        return pattern, str(why)
    return converted, check(converted)


def check(pattern: str) -> str | None:
    """Why the `regex` module (what mpm-proxy compiles routes with) rejects `pattern`, or None
    when it compiles."""
    try:
        regex.compile(pattern.encode("utf-8", "surrogateescape"))
        return None
    except regex.error as exc:
        return str(exc)


def group_count(pattern: str) -> int:
    return regex.compile(pattern.encode("utf-8", "surrogateescape")).groups


def split_flags(pattern: str) -> tuple[str, str]:
    """('i', rest) for '(?i)rest': global flags must lead a Python pattern, so a composite
    pattern hoists them."""
    m = _INLINE_FLAGS.match(pattern)
    return (m.group(1), pattern[m.end():]) if m else ("", pattern)


def scoped(pattern: str, nocase: bool | None) -> str:
    """`pattern` wrapped so it can sit inside a larger one: (?:...), (?i:...) or (?-i:...)."""
    flags, body = split_flags(pattern)
    if nocase is True:
        flags += "i"
    inner = f"(?{flags}:{body})" if flags else f"(?:{body})"
    if nocase is False and "i" not in flags:
        inner = f"(?-i:{body})"
    return inner


def non_capturing(pattern: str) -> str:
    """`pattern` with every capturing group made non-capturing (for a lookahead guard)."""
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            following = pattern[i + 1:i + 2]
            if following.isdigit() and following != "0":
                raise PatternError(f"'{pattern}' refers back to a group (\\{following})")
            out.append(pattern[i:i + 2])
            i += 2
        elif c == "[":                      # a character class: copied whole
            j = i + 1
            j += 1 if pattern[j:j + 1] == "^" else 0
            j += 1 if pattern[j:j + 1] == "]" else 0
            while j < n and pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            out.append(pattern[i:j + 1])
            i = j + 1
        elif pattern.startswith("(?P<", i):
            out.append("(?:")
            i = pattern.index(">", i) + 1
        elif pattern.startswith("(?P=", i):
            raise PatternError(f"'{pattern}' refers back to a named group")
        elif c == "(" and not pattern.startswith("(?", i):
            out.append("(?:")
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def prefix_guard(fake: str) -> str:
    """What httpd's alias_match(uri, fake) accepts, as a pattern anchored where it is used."""
    return literal(fake) if fake.endswith("/") else f"{literal(fake)}(?=/|$)"


def exclusion_guard(prefix: str | None, pattern: str | None, nocase: bool | None = None) -> str:
    """A `!` rule as the body of a `(?!...)` at the start of the path."""
    if prefix is not None:
        return prefix_guard(prefix)
    return f".*?{scoped(non_capturing(pattern), nocase)}"


def guarded(guards: list[str], body: str) -> str:
    """`^(?!g1|g2)body`: body only where no earlier `!` rule applies."""
    flags, rest = split_flags(body)
    lead = f"(?{flags})" if flags else ""
    if not guards:
        return f"{lead}{rest}"
    return f"{lead}^(?!{'|'.join(guards)}){rest}"


def search_anywhere(pattern: str, nocase: bool | None = None) -> str:
    """A searched pattern as a body that starts at position 0 (for guarded())."""
    flags, body = split_flags(pattern)
    if nocase:
        flags += "i"
    lead = f"(?{flags})" if flags else ""
    return f"{lead}.*?(?:{body})"


def renumber(template: str, shift: int, groups: int, on_missing) -> str:
    """$N -> $(N+shift) in a target template; a $N past the pattern's groups is empty in
    httpd (ap_pregsub), so it is dropped, and `on_missing(n)` is told."""
    def sub(m: re.Match) -> str:
        n = int(m.group(1))
        if n > groups:
            on_missing(n)
            return ""
        if n + shift > 9:
            raise PatternError(f"${n} would become ${n + shift}; mpm-proxy substitutes $0 to $9 only")
        return f"${n + shift}"
    return re.sub(r"\$(\d)", sub, template)
