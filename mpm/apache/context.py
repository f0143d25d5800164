"""What the translators share: the report, the tree's facts, and the settings that have one
value for the whole mpm-proxy configuration though httpd sets them per rule or per server."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .reader import Directive, Tree
from .report import Report

TIME_UNITS = {"": 1.0, "s": 1.0, "ms": 0.001, "mi": 60.0, "h": 3600.0}


@dataclass
class Worker:
    """A mod_proxy worker: the URL it was defined with and its parameters (shared by every
    later ProxyPass or RewriteRule [P] whose URL starts with it, as httpd shares it)."""
    url: str
    params: dict[str, str]
    source: Directive


@dataclass
class Context:
    tree: Tree
    report: Report
    tree_file: str = ""                 # the file given on the command line
    connect_timeouts: list[tuple[float, Directive]] = field(default_factory=list)
    balancer_params: dict[str, list[tuple[str, str, Directive]]] = field(default_factory=dict)
    handled: set[int] = field(default_factory=set)     # ids of the directives a translator took care of
    reverse_used: set[int] = field(default_factory=set)  # ProxyPassReverse lines some route took up
    # (id(virtual host scope), balancer name) -> its name in the output, for a virtual host's own
    # balancer whose name an earlier server took (httpd's balancers are per server, ours global)
    balancer_aliases: dict[tuple[int, str], str] = field(default_factory=dict)
    client_certs: bool = False          # a listener has client_ca: mpm-proxy then owns X-SSL-Client-*

    def take(self, d: Directive) -> Directive:
        self.handled.add(id(d))
        return d

    def balancer_name(self, scope, name: str) -> str:
        """The output name of balancer://`name` (lower-case) as `scope`'s requests see it."""
        return self.balancer_aliases.get((id(scope), name), name)

    def path(self, value: str) -> str:
        """A file path as httpd resolves it: relative to ServerRoot."""
        return os.path.normpath(os.path.join(self.tree.server_root, value))


def seconds(text: str, default_unit: str = "s") -> float | None:
    """httpd's timeout syntax (ap_timeout_parameter_parse): '10', '500ms', '2mi', '1h'."""
    digits = len(text) - len(text.lstrip("0123456789"))
    if digits == 0:
        return None
    unit = text[digits:] or default_unit
    if unit not in TIME_UNITS:
        return None
    return int(text[:digits]) * TIME_UNITS[unit]


def whole_seconds(text: str, d: Directive, report: Report | None) -> float | None:
    """ProxyTimeout and a worker's timeout=, read as mod_proxy reads them (atoi): the leading
    digits are seconds and whatever follows is ignored, without a word from httpd, so
    'timeout=500ms' is 500 seconds there.  `report`: where to say so (None: said elsewhere)."""
    digits = len(text) - len(text.lstrip("0123456789"))
    if digits == 0:
        return None
    if text[digits:] and report is not None:
        report.warn(d.where, f"{d.name}: '{text}' is {int(text[:digits])} seconds in httpd, which reads only the "
                             "number here (no unit); translated as httpd reads it")
    return float(int(text[:digits]))


def timeout_of(d: Directive, report: Report) -> float | None:
    """The seconds a Timeout or ProxyTimeout line sets, each read as httpd reads it."""
    return whole_seconds(d.args, d, report) if d.key == "proxytimeout" else seconds(d.args)


def on_off(d: Directive, report: Report) -> bool | None:
    """On/Off (any case); None and an error otherwise."""
    words = d.words
    if len(words) == 1 and words[0].lower() in ("on", "off"):
        return words[0].lower() == "on"
    report.error(d.where, f"{d.name} must be On or Off, got '{d.args}'")
    return None


def number(d: Directive, report: Report, minimum: int = 0) -> int | None:
    words = d.words
    if len(words) == 1 and words[0].isdigit() and int(words[0]) >= minimum:
        return int(words[0])
    report.error(d.where, f"{d.name} takes a whole number (at least {minimum}), got '{d.args}'")
    return None
