"""Read the pinned versions from `versions.env` (KEY=VALUE lines, `#` comments)."""

from __future__ import annotations

from pathlib import Path

from fresh.errors import ConfigError
from fresh.settings import REPO_ROOT

VERSIONS_FILE = REPO_ROOT / "versions.env"


def load_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    versions: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE, got {line!r}")
        versions[key.strip()] = value.strip()
    return versions


def require(versions: dict[str, str], key: str, path: Path = VERSIONS_FILE) -> str:
    try:
        return versions[key]
    except KeyError:
        raise ConfigError(f"{path}: missing key {key}") from None
