"""The main server and its virtual hosts, as httpd merges them for a request.

A <VirtualHost> inherits the main server's ProxyPass rules (the main server's first),
its <Location> sections (the main server's first, so a virtual host's own win), its
balancers and most single-valued settings; not its mod_rewrite rules (unless
`RewriteOptions Inherit`).  A Scope is one of them with its own directives in file order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .reader import Directive

# Sections whose content this translation reads (the others are reported whole).
LOCATION_SECTIONS = ("Location", "LocationMatch")


@dataclass(eq=False)
class Scope:
    vhost: Directive | None                      # None: the main server
    directives: list[Directive] = field(default_factory=list)
    main: Scope | None = None                    # the main server, for a virtual host

    @property
    def label(self) -> str:
        return "the main server" if self.vhost is None else f"<VirtualHost {self.vhost.args}> ({self.vhost.where})"

    @property
    def addresses(self) -> list[str]:
        return self.vhost.words if self.vhost is not None else []

    def own(self, *names: str) -> list[Directive]:
        keys = {name.lower() for name in names}
        return [d for d in self.directives if d.key in keys]

    def chain(self, *names: str) -> list[Directive]:
        """The main server's, then this virtual host's (httpd's merge order for lists)."""
        inherited = self.main.own(*names) if self.main is not None else []
        return inherited + self.own(*names)

    def last(self, name: str) -> Directive | None:
        """The value in force: this scope's last, else the main server's last."""
        mine = self.own(name)
        if mine:
            return mine[-1]
        return self.main.last(name) if self.main is not None else None

    @property
    def names(self) -> list[str]:
        """ServerName and ServerAlias names (lower-case) that select this virtual host.  A
        virtual host without a ServerName has the main server's (httpd merges it down)."""
        found = []
        named = self.own("ServerName")[-1:] or (self.main.own("ServerName")[-1:] if self.main is not None else [])
        for d in named:
            name = d.words[0] if d.words else ""
            name = name.split("://", 1)[-1]
            host = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
            found.append(host.lower())
        for d in self.own("ServerAlias"):
            found.extend(w.lower() for w in d.words)
        return found

    def locations(self) -> list[Directive]:
        """<Location> and <LocationMatch> sections in merge order (main server's first)."""
        inherited = self.main.locations() if self.main is not None else []
        return inherited + [d for d in self.directives if d.name in LOCATION_SECTIONS]


def split_scopes(directives: list[Directive]) -> tuple[Scope, list[Scope]]:
    """(main server, virtual hosts in file order)."""
    main = Scope(None)
    vhosts = []
    for d in directives:
        if d.name == "VirtualHost":
            vhosts.append(Scope(d, list(d.children or []), main))
        else:
            main.directives.append(d)
    return main, vhosts
