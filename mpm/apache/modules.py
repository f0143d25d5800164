"""Which httpd module defines which directive, and which modules a configuration has loaded.

httpd refuses a directive no loaded module defines ("Invalid command ..."), and `<IfModule>`
is decided while the file is read, against the modules loaded so far.  The table
(`modules.txt`) comes from the httpd 2.4 manual.  A module is known by its identifier
(`proxy_module`, what LoadModule names) and by its source file (`mod_proxy.c`, what
`<IfModule mod_proxy.c>` may name instead).
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field

TABLE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "modules.txt")

# Compiled into Debian's apache2 (`apache2 -l`): present without any LoadModule.
STATIC_MODULES = ("core", "so_module", "watchdog_module", "http_module", "log_config_module", "logio_module",
                  "version_module", "unixd_module", "mpm_common")
# Source files whose name is not mod_<stem>.c.
SOURCE_FILES = {"core": "core.c", "http_module": "http_core.c", "mpm_event_module": "event.c",
                "mpm_prefork_module": "prefork.c", "mpm_worker_module": "worker.c", "ldap_module": "util_ldap.c",
                "mpm_common": "mpm_common.c"}
MPM_MODULES = ("mpm_event_module", "mpm_worker_module", "mpm_prefork_module")
# What a configuration that loads nothing (a site file on its own) is read against: everything
# httpd ships, with the event MPM.
FRAGMENT_EXCLUDES = ("mpm_worker_module", "mpm_prefork_module", "mpm_netware_module", "nwssl_module",
                     "isapi_module", "privileges_module")


def _read_table() -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """(directive lower-case -> (spelling, module identifier), module identifier -> source file)."""
    directives: dict[str, tuple[str, str]] = {}
    sources: dict[str, str] = {}
    module = None
    with open(TABLE_PATH, encoding="utf-8") as f:
        for line in f:
            if not line.strip() or line.startswith("#"):
                continue
            words = line.split()
            if not line[0].isspace():
                module, source, words = words[0], words[1], words[2:]
                sources[module] = source
            for word in words:
                directives.setdefault(word.lower(), (word, module))
    return directives, sources


DIRECTIVES, _SOURCES = _read_table()
SOURCES = {**_SOURCES, **SOURCE_FILES}


def source_of(identifier: str) -> str:
    """`proxy_module` -> `mod_proxy.c` (the name `<IfModule>` may use)."""
    if identifier in SOURCES:
        return SOURCES[identifier]
    stem = identifier[:-len("_module")] if identifier.endswith("_module") else identifier
    return f"mod_{stem}.c"


def lookup(name: str) -> tuple[str, str] | None:
    """(canonical spelling, module identifier) of a directive, case-insensitively; None if unknown."""
    return DIRECTIVES.get(name.lower().lstrip("<"))


def suggest(name: str) -> str:
    """' (did you mean 'X'?)' for a misspelled directive, else ''."""
    spellings = {lower: spelled for lower, (spelled, _) in DIRECTIVES.items()}
    close = difflib.get_close_matches(name.lower().lstrip("<"), list(spellings), n=1, cutoff=0.75)
    return f" (did you mean '{spellings[close[0]]}'?)" if close else ""


@dataclass
class LoadedModules:
    """The modules loaded so far, as httpd's `<IfModule>` sees them while reading."""
    identifiers: set[str] = field(default_factory=lambda: set(STATIC_MODULES))
    fragment: bool = False        # no LoadModule at all: read as if every shipped module were loaded

    def load(self, identifier: str) -> None:
        self.identifiers.add(identifier)

    def has(self, name: str) -> bool:
        """`proxy_module` or `mod_proxy.c` (httpd accepts both in `<IfModule>`)."""
        if self.fragment:
            return not any(name in (m, source_of(m)) for m in FRAGMENT_EXCLUDES)
        if name in self.identifiers:
            return True
        return name.endswith(".c") and any(source_of(m) == name for m in self.identifiers)

    def defines(self, module: str) -> bool:
        """Whether a directive of `module` is available."""
        if module == "mpm_event_module" and self.fragment:
            return True
        return self.has(module)

    @property
    def mpm(self) -> str | None:
        if self.fragment:
            return "mpm_event_module"
        return next((m for m in MPM_MODULES if m in self.identifiers), None)
