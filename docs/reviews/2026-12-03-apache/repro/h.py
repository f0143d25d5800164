"""Shared harness for this review's repros: one httpd configuration served by the real
apache2 and, translated by `mpm import-apache`, by mpm-proxy; the same requests to both.
Run a repro from the clone's root: /work/main/.venv/bin/python docs/reviews/2026-12-03-apache/repro/rNN_*.py
Everything started here is stopped by pid (Apache.stop, Proxy.stop, Member.close)."""
from __future__ import annotations

import os
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../../../.."))
sys.path[:0] = [os.path.join(ROOT, "tests"), ROOT]

import yaml  # noqa: E402
from apache_util import Apache, ask, import_apache, preamble, reached  # noqa: E402,F401
from balancer_util import Member  # noqa: E402
from proxyproc import Proxy  # noqa: E402
from support import free_port  # noqa: E402


def translate(text: str, files: dict | None = None, extra=(), head: str | None = None):
    """Write the config (+ files) in a temp dir; return (dir, conf path, result, yaml or None)."""
    directory = tempfile.mkdtemp(prefix="apache-review-")
    for name, content in (files or {}).items():
        path = os.path.join(directory, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb" if isinstance(content, bytes) else "w") as f:
            f.write(content)
    conf = os.path.join(directory, "httpd.conf")
    body = (preamble(directory) if head is None else head) + text
    with open(conf, "wb" if isinstance(text, bytes) else "w") as f:
        f.write(body.encode() if isinstance(text, bytes) else body)
    out = os.path.join(directory, "mpm.yaml")
    result = import_apache(conf, out, *extra)
    generated = None
    if os.path.exists(out):
        with open(out) as f:
            generated = yaml.safe_load(f)
    return directory, conf, result, generated


def compare(template: str, requests, names=("A", "B", "C"), files=None, show=True):
    """Serve `template` (format keys: port, and one per member name) by both; print each
    request's (backend, path, upgrade, Host) at Apache and at mpm.  Returns the mismatches."""
    members = {n: Member(n) for n in names}
    port = free_port()
    text = template.format(port=port, **{n: m.port for n, m in members.items()})
    directory, conf, result, generated = translate(text, files)
    print("import exit", result.returncode)
    print(result.stderr.strip())
    apache = proxy = None
    diffs = []
    try:
        apache = Apache(conf, [port]).start()
        if generated is None:
            print("nothing written")
            return None
        sections = {k: v for k, v in generated.items() if k not in ("listen", "control", "log", "routes")}
        proxy = Proxy(os.path.join(directory, "mpm"), generated["routes"], **sections).start()
        for path, options in requests:
            options = dict(options)
            a = reached(list(members.values()), port, path, **options)
            m = reached(list(members.values()), proxy.port, path, **options)
            mark = "  " if a == m else "!!"
            if a != m:
                diffs.append((path, options, a, m))
            if show:
                print(f"{mark} {path!r:28} {options}\n     apache={a}\n     mpm   ={m}")
    finally:
        if proxy:
            proxy.stop()
        if apache:
            apache.stop()
        for m in members.values():
            m.close()
    return diffs
