"""Read a YAML file that must hold a mapping; every problem is one line naming the file (and line)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from fresh.errors import ConfigError


def read_yaml_mapping(path: Path, missing_hint: str = "") -> dict[str, Any]:
    """The mapping in `path` (an empty file is an empty mapping)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found{f' ({missing_hint})' if missing_hint else ''}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data
