"""httpd configuration files -> a tree of directives, each with its FILE:LINE.

Read the way httpd builds its configuration tree (server/config.c): what httpd executes
while reading is executed here too, in file order, and disappears from the tree:
`Define`/`UnDefine` (and `${NAME}` after them), `Include`/`IncludeOptional` (globs,
relative to ServerRoot, a directory meaning every file in it), `LoadModule`, `ServerRoot`,
and the conditional sections `<IfModule>`, `<IfDefine>`, `<IfVersion>`, `<IfFile>`,
`<IfDirective>`, `<IfSection>`, whose content is kept or skipped.  Everything else stays
in the tree as httpd would hand it to its modules: plain directives and sections
(`<VirtualHost>`, `<Location>`, `<Proxy>`, ...) with their children.

Broken input raises ApacheConfigError naming every problem found: an unknown directive
(or one whose module is not loaded), unbalanced sections, a missing Include.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field

from . import syntax
from .modules import LoadedModules, lookup, suggest
from .report import ApacheConfigError, Report

HTTPD_VERSION = (2, 4, 71)     # what <IfVersion> compares against: the httpd this importer was checked with
CONDITIONALS = ("IfModule", "IfDefine", "IfVersion", "IfFile", "IfDirective", "IfSection")
_GLOB_CHARS = re.compile(r"[*?\[]")
# Directives httpd accepts only at the top level (ap_check_cmd_context(cmd, GLOBAL_ONLY)).
GLOBAL_ONLY = {"listen", "pidfile", "startservers", "serverlimit", "threadsperchild", "threadlimit",
               "maxrequestworkers", "maxclients", "maxconnectionsperchild", "maxrequestsperchild",
               "gracefulshutdowntimeout", "minsparethreads", "maxsparethreads", "user", "group", "mutex",
               "defaultruntimedir", "listenbacklog", "scoreboardfile"}


@dataclass
class Directive:
    name: str                      # httpd's spelling ("ProxyPass"; "VirtualHost" for <VirtualHost>)
    args: str                      # the argument text, ${NAME} resolved (a section's: without the '>')
    file: str
    line: int
    children: list[Directive] | None = None    # a section's content; None for a plain directive
    seq: int = 0                               # position in the whole configuration, in reading order

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def words(self) -> list[str]:
        return syntax.words(self.args)

    @property
    def key(self) -> str:
        return self.name.lower()

    def text(self) -> str:
        """As an operator would recognise it in their file."""
        if self.children is not None:
            return f"<{self.name} {self.args}>".replace(" >", ">")
        return f"{self.name} {self.args}".rstrip()


@dataclass
class Tree:
    directives: list[Directive]
    server_root: str
    modules: LoadedModules
    defines: dict[str, str] = field(default_factory=dict)


class Reader:
    def __init__(self, report: Report, cli_defines: tuple[str, ...], fragment: bool):
        self.report = report
        self.defines: dict[str, str] = {name: "" for name in cli_defines}
        self.modules = LoadedModules(fragment=fragment)
        self.loaded_any = False
        self.server_root = ""
        self.stack: list[str] = []         # files being read, for Include loops
        self.unavailable: list[str] = []   # directives whose module is not loaded (decided at the end)
        self.tree: list[Directive] = []
        self.count = 0
        self.sections: list[str] = []      # the (non-conditional) sections being read, innermost last

    # -- files -------------------------------------------------------------------------------

    def read_file(self, path: str, where: str | None) -> list[Directive]:
        path = os.path.abspath(path)
        if path in self.stack:
            raise ApacheConfigError([f"{where}: Include loop: '{path}' includes itself "
                                     f"(through {' -> '.join(self.stack[self.stack.index(path):])})"])
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                text = f.read()
        except OSError as exc:
            place = where or f"{path}:1"
            raise ApacheConfigError([f"{place}: Could not open configuration file {path}: "
                                     f"{exc.strerror or exc}"]) from None
        self.stack.append(path)
        try:
            lines = iter(syntax.logical_lines(text))
            return self._block(lines, path, None, None)
        finally:
            self.stack.pop()

    def _block(self, lines, file: str, end: str | None, opener: str | None) -> list[Directive]:
        """Directives up to `</end>` (or the end of the file when `end` is None)."""
        out: list[Directive] = []
        for logical in lines:
            if not logical.text or logical.text.startswith("#"):
                continue
            where = f"{file}:{logical.line}"
            if "\x00" in logical.text:
                raise ApacheConfigError([f"{where}: a NUL byte in the line (httpd reads an argument only up to "
                                         "it): remove it"])
            text = syntax.resolve_env(logical.text, self.defines, lambda name, w=where: self.report.warn(
                w, f"${{{name}}} is not defined (Define it, or set it in the environment); "
                   f"httpd leaves the text as it is"))
            name, args = syntax.getword(text)
            if name.startswith("</"):
                self._close(name, end, where)
                return out
            if name.startswith("<"):
                out.extend(self._section(lines, file, name, args, where))
            else:
                out.extend(self._directive(name, args, file, logical.line))
        if end is not None:
            raise ApacheConfigError([f"{opener}: <{end}> was not closed (no </{end}> before the end of {file})"])
        return out

    def _close(self, name: str, end: str | None, where: str) -> None:
        closing = name[2:]
        if not closing.endswith(">"):
            raise ApacheConfigError([f"{where}: {name}> directive missing closing '>'"])
        closing = closing[:-1]
        if end is None:
            raise ApacheConfigError([f"{where}: </{closing}> without matching <{closing}> section"])
        if closing.lower() != end.lower():
            raise ApacheConfigError([f"{where}: Expected </{end}> but saw </{closing}>"])

    # -- sections ----------------------------------------------------------------------------

    def _section(self, lines, file: str, token: str, args: str, where: str) -> list[Directive]:
        name = token[1:]
        if name.endswith(">"):
            name, args = name[:-1], ">" + args if not args else args
        args = args or ">"
        inner = syntax.section_args(args)
        if inner is None:
            raise ApacheConfigError([f"{where}: <{name}> directive missing closing '>'"])
        known = self._known(name, where, section=True)
        spelled = known or name
        if not inner.strip() and spelled != "Else":
            # httpd's AH00526 (without it the importer made a <Location> of "" match every path).
            raise ApacheConfigError([f"{where}: <{spelled}> directive requires additional arguments"])
        if spelled in CONDITIONALS:
            if self._condition(spelled, inner, where):
                return self._block(lines, file, spelled, where)
            self._soak(lines, spelled, where, file)
            return []
        outer = self.sections[-1] if self.sections else None
        if outer is not None and (spelled == "VirtualHost" or
                                  (spelled in ("Location", "LocationMatch") and outer != "VirtualHost")):
            self.report.error(where, f"<{spelled}> cannot occur within <{outer}> section")
        section = Directive(spelled, inner, file, int(where.rsplit(":", 1)[1]), [], self._next())
        self.sections.append(spelled)
        try:
            section.children = self._block(lines, file, spelled, where)
        finally:
            self.sections.pop()
        return [section]

    def _soak(self, lines, name: str, opener: str, file: str) -> None:
        """Skip a false conditional's content, sections balanced (ap_soak_end_container)."""
        for logical in lines:
            word, args = syntax.getword(logical.text)
            if word.startswith("</"):
                closing = word[2:].rstrip(">")
                if closing.lower() != name.lower():
                    raise ApacheConfigError([f"{file}:{logical.line}: Expected </{name}> but saw </{closing}>"])
                return
            if word.startswith("<"):
                inner = word[1:-1] if word.endswith(">") else word[1:]
                self._soak(lines, inner, f"{file}:{logical.line}", file)
        raise ApacheConfigError([f"{opener}: <{name}> was not closed (no </{name}> before the end of {file})"])

    def _condition(self, kind: str, args: str, where: str) -> bool:
        words = syntax.words(args)
        if len(words) != 1 and kind != "IfVersion":
            raise ApacheConfigError([f"{where}: <{kind}> takes exactly one argument, got {len(words)}"])
        if kind == "IfVersion":
            return self._version(words, where)
        negate = words[0].startswith("!")
        subject = words[0][1:] if negate else words[0]
        if kind == "IfModule":
            found = self.modules.has(subject)
        elif kind == "IfDefine":
            found = subject in self.defines
        elif kind == "IfFile":
            found = os.path.exists(self._relative(subject))
        else:   # IfDirective, IfSection: known and its module loaded
            known = lookup(subject)
            found = known is not None and self.modules.defines(known[1])
        return found != negate

    def _version(self, words: list[str], where: str) -> bool:
        """<IfVersion [[!]op] version>: = == > >= < <= against HTTPD_VERSION (regexes: ~ or /re/)."""
        op, version = ("=", words[0]) if len(words) == 1 else (words[0], words[1]) if len(words) == 2 else ("", "")
        negate = op.startswith("!")
        op = op[1:] if negate else op
        mine = ".".join(map(str, HTTPD_VERSION))
        if op == "~" or (version.startswith("/") and version.endswith("/") and len(version) > 1):
            pattern = version.strip("/") if op != "~" else version
            return (re.search(pattern, mine) is not None) != negate
        parts = version.split(".")
        if op not in ("=", "==", ">", ">=", "<", "<=") or not all(p.isdigit() for p in parts):
            raise ApacheConfigError([f"{where}: <IfVersion> needs [[!]operator] version, e.g. '>= 2.4'"])
        given = tuple(int(p) for p in parts)
        have = HTTPD_VERSION[:len(given)]
        result = {"=": have == given, "==": have == given, ">": have > given, ">=": have >= given,
                  "<": have < given, "<=": have <= given}[op]
        return result != negate

    # -- directives --------------------------------------------------------------------------

    def _directive(self, word: str, args: str, file: str, line: int) -> list[Directive]:
        where = f"{file}:{line}"
        spelled = self._known(word, where, section=False) or word
        key = spelled.lower()
        words = syntax.words(args)
        if key == "define":
            self._define(words, where)
        elif key == "undefine":
            for name in words:
                self.defines.pop(name, None)
        elif key in ("include", "includeoptional"):
            return self._include(words, key == "includeoptional", where)
        elif key == "loadmodule":
            if self.sections:
                raise ApacheConfigError([f"{where}: LoadModule cannot occur within <{self.sections[-1]}> section"])
            if len(words) != 2:
                raise ApacheConfigError([f"{where}: LoadModule takes two arguments, a module name and a path"])
            self.modules.load(words[0])
            self.loaded_any = True
        elif key == "serverroot":
            self._server_root(words, where)
        else:
            if key in GLOBAL_ONLY and self.sections:
                self.report.error(where, f"{spelled} cannot occur within <{self.sections[-1]}> section")
            return [Directive(spelled, args, file, line, None, self._next())]
        return []

    def _next(self) -> int:
        self.count += 1
        return self.count

    def _known(self, word: str, where: str, section: bool) -> str | None:
        """httpd's spelling of a directive; records an error when httpd would not know it."""
        found = lookup(word)
        shown = f"<{word}>" if section else word
        if found is None:
            self.report.error(where, f"Invalid command '{shown}', perhaps misspelled or defined by a module "
                                     f"not included in the server configuration{suggest(word)}")
            return None
        spelled, module = found
        if not self.modules.defines(module):
            self.unavailable.append(f"{where}: Invalid command '{shown}': it is defined by {module}, which "
                                    f"this configuration does not load (LoadModule {module} ...)")
        return spelled

    def _define(self, words: list[str], where: str) -> None:
        if not 1 <= len(words) <= 2:
            raise ApacheConfigError([f"{where}: Define takes one or two arguments (a name and a value)"])
        if ":" in words[0]:
            raise ApacheConfigError([f"{where}: Define: a variable name must not contain ':'"])
        self.defines[words[0]] = words[1] if len(words) == 2 else ""

    def _server_root(self, words: list[str], where: str) -> None:
        if len(words) != 1:
            raise ApacheConfigError([f"{where}: ServerRoot takes one argument, a directory"])
        path = os.path.abspath(words[0])
        if not os.path.isdir(path):
            raise ApacheConfigError([f"{where}: ServerRoot must be a valid directory ('{path}' is not one here)"])
        self.server_root = path

    def _relative(self, path: str) -> str:
        return os.path.normpath(os.path.join(self.server_root, path))

    def _include(self, words: list[str], optional: bool, where: str) -> list[Directive]:
        name = "IncludeOptional" if optional else "Include"
        if len(words) != 1:
            raise ApacheConfigError([f"{where}: {name} takes one argument, a file, directory or wildcard"])
        path = self._relative(words[0])
        if _GLOB_CHARS.search(path):
            matches = sorted(glob.glob(path))
            if not matches and not optional:
                raise ApacheConfigError([f"{where}: No matches for the wildcard '{os.path.basename(path)}' "
                                         f"in '{os.path.dirname(path)}', failing (use IncludeOptional to "
                                         "allow none)"])
        elif not os.path.exists(path):
            if optional:
                return []
            raise ApacheConfigError([f"{where}: Could not open configuration file {path}: No such file or directory"])
        else:
            matches = [path]
        out: list[Directive] = []
        for match in matches:
            for file in self._files(match):
                out.extend(self.read_file(file, where))
        return out

    @staticmethod
    def _files(path: str) -> list[str]:
        """A file, or every file under a directory in name order (httpd's Include of a directory)."""
        if not os.path.isdir(path):
            return [path]
        found = []
        for entry in sorted(os.listdir(path)):
            found.extend(Reader._files(os.path.join(path, entry)))
        return found


def read_config(path: str, report: Report, cli_defines: tuple[str, ...] = ()) -> Tree:
    """Read `path` as httpd would.  A configuration that loads no module at all (a site file on
    its own) is read again as if every module httpd ships were loaded, and the report says so.
    Broken structure raises ApacheConfigError; other errors are left in the report, so the
    translation can add its own and the operator sees them all at once."""
    reader = _read(path, report, cli_defines, fragment=False)
    if not reader.loaded_any:
        report.errors.clear()
        reader = _read(path, report, cli_defines, fragment=True)
        report.warn(f"{os.path.abspath(path)}:1", "no LoadModule lines: read as a fragment, as if every "
                    "module httpd ships (and the event MPM) were loaded")
    else:
        for problem in reader.unavailable:
            report.errors.append(problem)
    return Tree(reader.tree, reader.server_root, reader.modules, reader.defines)


def _read(path: str, report: Report, cli_defines: tuple[str, ...], fragment: bool) -> Reader:
    reader = Reader(report, cli_defines, fragment)
    reader.server_root = os.path.dirname(os.path.abspath(path))
    reader.tree = reader.read_file(path, None)
    return reader
