"""`mpmctl import-apache FILE [-o OUT.yaml] [--strict] [-D NAME]`.

Exit status: 0 when everything that decides where a request goes was translated (notes
about the rest are on stderr); 1 when something that does was left out, or, with --strict,
when there is any note at all; 2 when the Apache configuration is broken (nothing is
written) or the result would not load.  The YAML is checked with mpm-proxy's own loader
before it is written; a backend host that does not resolve here, or a certificate that is
not on this machine, is reported but does not stop the import (the file is for the
machine that has them).
"""

from __future__ import annotations

import os
import sys
import tempfile

from conf import ConfigError, load_config

from .emit import emit
from .reader import read_config
from .report import ApacheConfigError, Report
from .routes import drop_shadowed
from .translate import translate

EXIT_BROKEN = 2
ENVIRONMENT = ("cannot resolve backend host", "cannot read '", "cannot load certificate", "cannot load CA",
               "for appending: ")


def import_apache(file: str, output: str | None, strict: bool, defines: tuple[str, ...] = ()) -> int:
    report = Report()
    try:
        tree = read_config(file, report, defines)
        translation = translate(tree, report, file)
        report.raise_errors()
    except ApacheConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        print("import-apache: the Apache configuration has errors; nothing written", file=sys.stderr)
        return EXIT_BROKEN
    translation.routes = drop_shadowed(translation.routes, report)
    text = emit(translation, os.path.abspath(file))
    problems = _check(text, output)
    for note in sorted(report.notes, key=_order):
        print(note, file=sys.stderr)
    if problems is None:
        return EXIT_BROKEN
    for line in problems:
        print(f"import-apache: warning: on this machine the result does not pass configtest: {line}",
              file=sys.stderr)
    if output is None:
        sys.stdout.write(text)
    else:
        try:
            _write(output, text)
        except OSError as exc:
            print(f"import-apache: cannot write {output}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_BROKEN
    status = report.exit_status(strict)
    return 1 if strict and problems else status


def _order(note) -> tuple:
    file, _, line = note.where.rpartition(":")
    return (file, int(line) if line.isdigit() else 0)


def _check(text: str, output: str | None) -> list[str] | None:
    """Load the YAML as `mpmctl configtest` would: [] when it passes, the problems that depend
    on this machine otherwise, None (after printing why) when the translation itself is wrong."""
    directory = os.path.dirname(os.path.abspath(output)) if output else None
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=directory if directory and os.path.isdir(directory)
                                     else None, delete=False) as f:
        f.write(text)
        path = f.name
    try:
        load_config(path)
        return []
    except ConfigError as exc:
        local = [e.split(": ", 1)[-1] for e in exc.errors if any(s in e for s in ENVIRONMENT)]
        if len(local) == len(exc.errors):
            return local
        print("import-apache: the translation does not load (this is a bug in the importer):", file=sys.stderr)
        for line in exc.errors:
            print("  " + line.replace(path, "<output>"), file=sys.stderr)
        return None
    finally:
        os.unlink(path)


def _write(output: str, text: str) -> None:
    """Replace `output` at once: a reader never sees half a file."""
    directory = os.path.dirname(os.path.abspath(output))
    with tempfile.NamedTemporaryFile("w", dir=directory, prefix=".import-", suffix=".yaml", delete=False) as f:
        f.write(text)
        tmp = f.name
    os.replace(tmp, output)
