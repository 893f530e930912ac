from __future__ import annotations

import pytest

from smt.keyring import Keyring, KeyringSource


@pytest.fixture
def ring(keyring_source: KeyringSource) -> Keyring:
    return keyring_source.current()
