"""Rules a config value must follow; each failure is one ConfigError line naming the key, the rule and the value."""
from __future__ import annotations

import re

from autoft.errors import ConfigError

__all__ = ["check_run_name"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_run_name(key: str, name: object) -> str:
    """A run name is one path component: no separators, no `..`, not absolute (it names a folder under results/)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        shown = repr(name) if isinstance(name, str) and len(name) < 120 else f"a {type(name).__name__}"
        raise ConfigError(f"{key}: must be letters, digits, '_', '-' or '.' (one folder name, not a path), "
                          f"got {shown}")
    return name
