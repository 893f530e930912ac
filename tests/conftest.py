"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from fresh.pipeline import PipelineConfig, load_pipeline_config
from fresh.settings import Settings, load_settings
from smt.keyring import KeyringSource


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def pipeline(settings: Settings) -> PipelineConfig:
    return load_pipeline_config(settings.pipeline_config)


@pytest.fixture
def unique() -> str:
    """A short id to make topic, group, connector and database names unique per test run."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def keyring_source(tmp_path: Path) -> KeyringSource:
    """A new keyring (one active key, an index key) in this test's tmp folder, unwrapped (no KEK:
    tests/unit/smt/test_smt_keyring.py covers wrapping)."""
    source = KeyringSource(tmp_path / "keys" / "keyring.json", allow_unwrapped=True)
    source.generate()
    return source


@pytest.fixture
def kafka_client_home(tmp_path: Path) -> dict[str, str]:
    """Environment for a client process of a stack home that `stack up` prepared (the local CA and
    the users' password files) but whose broker is not running: a unit test of a Kafka failure
    then meets the failure it means to, not the missing CA of a fresh clone."""
    from stack.kafka_security import ensure_passwords, ensure_tls

    home = tmp_path / "stack-home"
    settings = load_settings(stack_home=home)
    assert settings.kafka_ca_file is not None
    ensure_tls(settings.kafka_ca_file.parent)
    ensure_passwords(settings)
    return {"FRESH_STACK_HOME": str(home)}
