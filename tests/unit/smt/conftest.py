from __future__ import annotations

from pathlib import Path

import pytest

from smt.keyring import Keyring, KeyringSource


@pytest.fixture
def keyring_source(tmp_path: Path) -> KeyringSource:
    source = KeyringSource(tmp_path / "keys" / "keyring.json")
    source.generate()
    return source


@pytest.fixture
def ring(keyring_source: KeyringSource) -> Keyring:
    return keyring_source.current()
