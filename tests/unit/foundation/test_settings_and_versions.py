"""Settings, pinned versions, and the docs that list them."""

from __future__ import annotations

import re

import pytest

from fresh.errors import ConfigError
from fresh.settings import REPO_ROOT, load_settings
from stack.versions import load_versions


def test_client_addresses_follow_the_stack_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRESH_KAFKA_PORT", "19092")
    monkeypatch.setenv("FRESH_CONNECT_PORT", "18083")
    settings = load_settings()
    assert settings.kafka_bootstrap == "127.0.0.1:19092"
    assert settings.connect_url == "http://127.0.0.1:18083"


def test_bad_setting_is_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRESH_KAFKA_PORT", "not-a-port")
    with pytest.raises(ConfigError, match="setting FRESH_KAFKA_PORT: "):
        load_settings()


def test_secrets_are_not_printed_by_repr() -> None:
    settings = load_settings(mongo_uri="mongodb://user:hunter2@db/")
    assert "hunter2" not in repr(settings)


def test_every_pinned_version_is_documented_with_a_reason() -> None:
    doc = (REPO_ROOT / "docs" / "versions.md").read_text(encoding="utf-8")
    for key, version in load_versions().items():
        assert version in doc, f"docs/versions.md does not mention {key}={version}"
    pyproject = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    for name, pin in re.findall(r'"([A-Za-z0-9_.-]+)==([^"]+)"', pyproject):  # chdb-core, phonenumbers
        assert pin in doc, f"docs/versions.md does not mention {name}=={pin}"
    cargo = (REPO_ROOT / "smt" / "native" / "Cargo.toml").read_text(encoding="utf-8")
    for name, pin in re.findall(r'^([a-z0-9_-]+) = "=([^"]+)"', cargo, re.MULTILINE):  # rlibphonenumber
        assert pin in doc, f"docs/versions.md does not mention {name} ={pin}"


def test_bad_versions_line_names_file_and_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "versions.env"
    path.write_text("KAFKA_VERSION=4.1.1\nbroken line\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"versions.env:2: expected KEY=VALUE"):
        load_versions(path)
