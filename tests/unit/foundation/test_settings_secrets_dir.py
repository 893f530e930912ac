"""FRESH_SECRETS_DIR: compose gives freshctl its credentials as files (`secrets:` under /run/secrets),
named like the variables; the one settings loader reads them, and the environment still wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from fresh.errors import ConfigError
from fresh.settings import load_settings


def test_credentials_come_from_files_named_like_the_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "FRESH_CLICKHOUSE_PASSWORD").write_text("from-a-file\n", encoding="utf-8")
    (tmp_path / "FRESH_MONGO_URI").write_text("mongodb://seed:pw@mongo:27017/?replicaSet=rs0", encoding="utf-8")
    monkeypatch.delenv("FRESH_CLICKHOUSE_PASSWORD", raising=False)
    monkeypatch.delenv("FRESH_MONGO_URI", raising=False)
    monkeypatch.setenv("FRESH_SECRETS_DIR", str(tmp_path))
    settings = load_settings()
    assert settings.clickhouse_password.get_secret_value() == "from-a-file"  # the file's newline is not part of it
    assert settings.mongo_uri.get_secret_value().startswith("mongodb://seed:pw@mongo")
    monkeypatch.setenv("FRESH_CLICKHOUSE_PASSWORD", "from-the-environment")
    assert load_settings().clickhouse_password.get_secret_value() == "from-the-environment"


def test_a_missing_folder_is_one_line_naming_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRESH_SECRETS_DIR", str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match="setting FRESH_SECRETS_DIR: no folder"):
        load_settings()
