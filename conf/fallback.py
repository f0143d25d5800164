"""Just enough of a broken config file to find the running master.

`mpmctl stop` and `status` must keep working while the file on disk is mid-edit and
invalid; the control paths are all they need, so read those leniently.  Whatever the file
holds, this returns or gives None: it must not fail where the full loader reported errors.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import yaml

from .fields import path_problem
from .loader import DEFAULT_CONFIG_PATH
from .model import MPM, Control
from .yamlnodes import LineLoader


def control_only_config(path: str | None):
    """A stand-in with `.control` and `.mpm`, or None when even that cannot be read."""
    file = os.path.abspath(path) if path is not None else DEFAULT_CONFIG_PATH
    base = os.path.dirname(file) if path is not None else os.getcwd()
    try:
        with open(file, encoding="utf-8") as f:
            control = _control_section(f.read())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None

    def path_of(key: str, default: str) -> str:
        value = control.get(key)
        value = value if isinstance(value, str) and value and path_problem(value) is None else default
        return os.path.normpath(os.path.join(base, value))

    return SimpleNamespace(file=file, control=Control(pidfile=path_of("pidfile", "run/mpm.pid"),
                                                      socket=path_of("socket", "run/mpm.sock")), mpm=MPM())


def _control_section(text: str) -> dict:
    """`control:`'s plain string values, read from the composed nodes: nothing else of the
    file is constructed, so a bad value elsewhere (`!!int "x"`) or an alias bomb costs nothing,
    and the nesting limit of conf.yamlnodes holds."""
    loader = LineLoader(text)
    try:
        root = loader.get_single_node()
    finally:
        loader.dispose()
    found: dict = {}
    for key, value in root.value if isinstance(root, yaml.MappingNode) else ():
        if isinstance(key, yaml.ScalarNode) and key.value == "control" and isinstance(value, yaml.MappingNode):
            found = {k.value: v.value for k, v in value.value
                     if isinstance(k, yaml.ScalarNode) and isinstance(v, yaml.ScalarNode)}
    return found
