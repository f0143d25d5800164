"""Just enough of a broken config file to find the running master.

`mpmctl stop` and `status` must keep working while the file on disk is mid-edit and
invalid; the control paths are all they need, so read those leniently.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import yaml

from .loader import DEFAULT_CONFIG_PATH
from .model import MPM, Control


def control_only_config(path: str | None):
    """A stand-in with `.control` and `.mpm`, or None when even that cannot be read."""
    file = os.path.abspath(path) if path is not None else DEFAULT_CONFIG_PATH
    base = os.path.dirname(file) if path is not None else os.getcwd()
    try:
        with open(file, encoding="utf-8") as f:
            tree = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    control = tree.get("control") if isinstance(tree, dict) else None
    control = control if isinstance(control, dict) else {}

    def path_of(key: str, default: str) -> str:
        value = control.get(key)
        value = value if isinstance(value, str) and value else default
        return os.path.normpath(os.path.join(base, value))

    return SimpleNamespace(file=file, control=Control(pidfile=path_of("pidfile", "run/mpm.pid"),
                                                      socket=path_of("socket", "run/mpm.sock")), mpm=MPM())
