"""Every setting is documented: each `Settings` field appears in the README's settings table."""

from __future__ import annotations

import pytest

from fresh.settings import REPO_ROOT, Settings

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_is_in_the_readme(field: str) -> None:
    name = f"FRESH_{field.upper()}"
    short = "_" + field.upper().split("_", 1)[1] if field.startswith("clickhouse_") else name
    assert f"`{name}`" in README or f"`{short}`" in README, f"{name} is not documented in README.md"
