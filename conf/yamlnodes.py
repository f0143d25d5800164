"""YAML to a tree of nodes that remember their line numbers.

Plain `yaml.safe_load` throws line numbers away, and every config error must say
`FILE:LINE`.  So the document is composed (`yaml.compose`: a node graph that still
carries marks) and then walked into three small node types, each with its 1-based
line.  Scalars are converted with PyYAML's own constructors, so `8`, `2.5` and
`"8"` come out as int, float and str as usual.

Two deliberate departures from PyYAML's YAML 1.1 defaults, because both silently
turn an operator's value into something else:

- only `true`/`false` are booleans: YAML 1.1 reads `access: off` as False and
  `reverse: yes` as True.  Here `off` stays the string "off" (which `log.access`
  understands) and `yes` is a type error with a line number.
- no base-60 numbers: YAML 1.1 reads `1:30` as the integer 90.

Duplicate keys, which PyYAML quietly lets the last one win, are reported.  Merge keys
(`<<: *base`, `<<: [*a, *b]`) are resolved as YAML defines them: the mapping's own keys
override merged ones, an earlier merged mapping wins over a later one.

Whatever the text, parsing ends in a tree or a YamlProblem with a line: a value its explicit
tag cannot take (`!!int "x"`) is a problem of its line, and nesting deeper than MAX_DEPTH stops
the composer (which recurses per level) long before Python's recursion limit would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import yaml

_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
MAX_DEPTH = 64                  # a config nests about 6 levels; the composer recurses per level

# What PyYAML's scalar constructors raise for a value their tag cannot take: `!!int "x"`
# (ValueError), `!!bool "x"` (KeyError), `!!timestamp "x"` (AttributeError), an integer of more
# than 4,300 digits (ValueError), `!!binary` of a number (TypeError).
_CONSTRUCTOR_ERRORS = (ValueError, TypeError, KeyError, AttributeError, OverflowError)
_MERGE = "tag:yaml.org,2002:merge"
_UNREADABLE = object()          # such a value: its problem is recorded, the walk goes on


if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _Loader(yaml.composer.Composer, CParser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
        """libyaml scans and parses, PyYAML's own code composes (it carries the nesting limit)
        and constructs.  The pure-Python scanner read about 160 KB/s here, so a reload of a
        275 KB file of 6,000 routes held the master's loop for seconds: composing on libyaml's
        events takes 0.14 s where SafeLoader took 1.0 s (review 2026-12-04-conf #2)."""

        def __init__(self, stream):
            CParser.__init__(self, stream)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
else:                           # a PyYAML built without libyaml
    _Loader = yaml.SafeLoader
# libyaml gives a reader error's position in bytes of the UTF-8 text, PyYAML in characters.
_POSITION_IN_BYTES = yaml.__with_libyaml__


class LineLoader(_Loader):
    """A safe loader with YAML 1.2-style booleans and numbers (see the module docstring), and
    a nesting limit."""

    depth = 0

    def compose_node(self, parent, index):
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


LineLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
LineLoader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
LineLoader.add_implicit_resolver(
    _INT, re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+)$"), list("-+0123456789")
)
LineLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
            |[-+]?(?:[0-9][0-9_]*)[eE][-+]?[0-9]+
            |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
            |[-+]?\.(?:inf|Inf|INF)
            |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


@dataclass
class Scalar:
    value: object   # str, int, float, bool, None (or a date, which no setting accepts)
    line: int


@dataclass
class Seq:
    items: list     # of Scalar | Seq | Map
    line: int


@dataclass
class Entry:
    key_line: int
    value: Scalar | Seq | Map


@dataclass
class Map:
    entries: dict[str, Entry] = field(default_factory=dict)
    line: int = 1


Node = Scalar | Seq | Map


class YamlProblem(Exception):
    """The text is not usable YAML; `problems` is a list of (line, message)."""

    def __init__(self, problems: list[tuple[int, str]]):
        super().__init__(problems)
        self.problems = problems


def parse(text: str) -> Node | None:
    """Parse one YAML document; None when it holds nothing (empty or only comments)."""
    loader = None
    try:
        loader = LineLoader(text)
        root = loader.get_single_node()
        if root is None:
            return None
        walker = _Walker(loader)
        tree = walker.walk(root)
    except yaml.reader.ReaderError as exc:      # a character position, no mark
        raise YamlProblem([(_line_at(text, exc.position),
                            f"the file holds a control character ({_character(exc.character)}), "
                            "which YAML does not allow")]) from None
    except yaml.MarkedYAMLError as exc:
        raise YamlProblem([(_line_of(exc), _named_character(_describe(exc), exc, text))]) from None
    except yaml.YAMLError as exc:   # no mark (rare): still give the operator a line
        raise YamlProblem([(1, str(exc))]) from None
    finally:
        if loader is not None:
            loader.dispose()
    if walker.problems:
        raise YamlProblem(walker.problems)
    return tree


def _named_character(message: str, exc: yaml.MarkedYAMLError, text: str) -> str:
    """libyaml says "found character that cannot start any token" where PyYAML named it: a tab
    after "-" is the usual one, and the operator should hear that it is a tab."""
    mark = exc.problem_mark
    if "found character that cannot" not in message or mark is None:
        return message
    lines = text.split("\n")
    line = lines[mark.line] if mark.line < len(lines) else ""
    if mark.column >= len(line):
        return message
    return message.replace("found character that", f"found character {line[mark.column]!r} that")


def _line_at(text: str, position: int) -> int:
    if _POSITION_IN_BYTES:
        return text.encode("utf-8", "surrogatepass").count(b"\n", 0, position) + 1
    return text.count("\n", 0, position) + 1


def _character(character) -> str:
    code = character if isinstance(character, int) else ord(character)
    return f"U+{code:04X}"


# Entries the merge keys (<<) of one file may copy in all.  Each merge copies the merged
# mapping's entries, so a chain of mappings each merging the one before costs the square of its
# length (6,000 lines: 18 million entries, 490 MiB and 5 s in the master's loop: review
# 2026-12-04-conf #1); a real configuration merges a few hundred.
MERGED_ENTRIES_MAX = 100_000


class _Walker:
    """The composed graph -> Scalar/Seq/Map, each composed node converted once.

    An alias is the very node its anchor names, so a node reached again (`*anchor`) gives the
    same converted object: the work is the size of the text, not of its expansion (a "billion
    laughs" file of ten aliases per level multiplied the work by ten per level).  The tree
    becomes a graph with shared parts, which nothing modifies."""

    def __init__(self, loader: LineLoader):
        self.loader = loader
        self.problems: list[tuple[int, str]] = []
        self.done: dict[int, Node] = {}       # id(composed node) -> converted (the graph holds them)
        self.active: set[int] = set()         # the nodes being converted: an alias to one is a cycle
        self.merged_entries = 0               # what the merge keys copied (MERGED_ENTRIES_MAX)

    def walk(self, node: yaml.Node) -> Node:
        key = id(node)
        if key in self.done:
            return self.done[key]
        if key in self.active:   # an alias that refers to its own ancestor
            raise yaml.MarkedYAMLError(problem="recursive alias", problem_mark=node.start_mark)
        self.active.add(key)
        try:
            converted = self._convert(node)
        finally:
            self.active.discard(key)
        self.done[key] = converted
        return converted

    def _convert(self, node: yaml.Node) -> Node:
        line = node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode):
            value = _construct(self.loader, node, self.problems)
            return Scalar(None if value is _UNREADABLE else value, line)
        if isinstance(node, yaml.SequenceNode):
            return Seq([self.walk(item) for item in node.value], line)
        own: dict[str, Entry] = {}
        merged: dict[str, Entry] = {}
        merge_line = None
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE:
                if merge_line is not None:
                    self.problems.append((key_line, f"duplicate key '<<' (first given at line {merge_line})"))
                else:
                    merge_line = key_line
                    self._merge(value_node, merged)
                continue
            key = _construct(self.loader, key_node, self.problems) if isinstance(key_node, yaml.ScalarNode) else None
            if key is _UNREADABLE:
                continue
            if not isinstance(key, str):
                shown = "a complex key" if key is None and not isinstance(key_node, yaml.ScalarNode) else repr(key)
                self.problems.append((key_line, f"keys must be strings, got {shown}"))
                continue
            if key in own:
                self.problems.append((key_line, f"duplicate key '{key}' (first given at line {own[key].key_line})"))
                continue
            own[key] = Entry(key_line, self.walk(value_node))
        # The mapping's own keys override merged ones, in the merged keys' place (as safe_load).
        entries = {key: own.get(key, entry) for key, entry in merged.items()}
        for key, entry in own.items():
            entries.setdefault(key, entry)
        return Map(entries, line)

    def _merge(self, value: yaml.Node, merged: dict) -> None:
        """`<<: *base` or `<<: [*a, *b]` (YAML's merge key): the keys of those mappings, an
        earlier one winning over a later one.  Done here rather than by PyYAML's
        flatten_mapping, which copies the entries into the node: merged keys are then no
        longer told from the mapping's own, and an override looked like a duplicate key."""
        sources = value.value if isinstance(value, yaml.SequenceNode) else [value]
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                self.problems.append((source.start_mark.line + 1,
                                      "a merge key (<<) takes a mapping or a list of mappings"))
                continue
            entries = self.walk(source).entries
            self.merged_entries += len(entries)
            if self.merged_entries > MERGED_ENTRIES_MAX:
                raise YamlProblem([(value.start_mark.line + 1, f"the merge keys (<<) copy more than "
                                    f"{MERGED_ENTRIES_MAX:,} entries in all (a chain of merges grows as its square)")])
            for key, entry in entries.items():
                merged.setdefault(key, entry)


def _construct(loader: LineLoader, node: yaml.ScalarNode, problems: list):
    """The scalar's value; _UNREADABLE, and a problem of its line, when its tag cannot take it."""
    try:
        return loader.construct_object(node, deep=True)
    except _CONSTRUCTOR_ERRORS as exc:
        tag = node.tag.rsplit(":", 1)[-1]
        shown = node.value if len(node.value) <= 40 else node.value[:37] + "..."
        why = f": {str(exc)[:100]}" if isinstance(exc, ValueError) else ""
        problems.append((node.start_mark.line + 1, f"'{shown}' is not a valid !!{tag} value{why}"))
        return _UNREADABLE


def _line_of(exc: yaml.MarkedYAMLError) -> int:
    mark = exc.problem_mark or exc.context_mark
    return mark.line + 1 if mark is not None else 1


def _describe(exc: yaml.MarkedYAMLError) -> str:
    """PyYAML's problem text, with its context (e.g. 'while parsing a block mapping') first."""
    problem = exc.problem or "invalid YAML"
    if exc.context:
        where = ""
        if exc.context_mark is not None and exc.problem_mark is not None \
                and exc.context_mark.line != exc.problem_mark.line:
            where = f" (started at line {exc.context_mark.line + 1})"
        return f"YAML syntax error {exc.context}{where}: {problem}"
    return f"YAML syntax error: {problem}"
