"""The README documents every setting and links every doc: each `Settings` field, and every
other FRESH_* variable the code, scripts and tests read, is in its settings table; each
docs/*.md is linked from it."""

from __future__ import annotations

import contextlib
import re

import pytest

from fresh.settings import REPO_ROOT, Settings

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_is_in_the_readme(field: str) -> None:
    name = f"FRESH_{field.upper()}"
    short = "_" + field.upper().split("_", 1)[1] if field.startswith("clickhouse_") else name
    assert f"`{name}`" in README or f"`{short}`" in README, f"{name} is not documented in README.md"


def _names_in_code() -> set[str]:
    """Every FRESH_* name the code, scripts, compose files and tests read or pass on."""
    found: set[str] = set()
    for path in REPO_ROOT.rglob("*"):
        parts = set(path.relative_to(REPO_ROOT).parts)
        if parts & {".venv", ".stack", ".git", "docs", "target", "node_modules"} or not path.is_file():
            continue
        if path.suffix in {".py", ".yml", ".yaml", ".j2", ".sh", ""} and path.stat().st_size < 1_000_000:
            with contextlib.suppress(UnicodeDecodeError):
                found |= set(re.findall(r"\bFRESH_[A-Z0-9_]*[A-Z0-9]\b", path.read_text(encoding="utf-8")))
    return found


def test_every_fresh_variable_the_code_reads_is_in_the_readme() -> None:
    names = _names_in_code()
    assert {"FRESH_PIPELINE_CONFIG", "FRESH_SKIP_NATIVE", "FRESH_VENV"} <= names  # the scan finds scripts too
    settings_table = README.split("## Settings", 1)[1]
    missing = sorted(n for n in names if f"`{n}`" not in settings_table  # FRESH_CLICKHOUSE_PORT may read `_PORT`
                     and f"`_{n.removeprefix('FRESH_CLICKHOUSE_')}`" not in settings_table)
    assert not missing, f"not in README.md's settings table: {missing}"


def test_every_doc_is_linked_from_the_readme() -> None:
    docs = sorted(p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "docs").glob("*.md"))
    assert len(docs) >= 10
    assert [d for d in docs if f"]({d})" not in README and f"]({d}#" not in README] == []
