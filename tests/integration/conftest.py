"""Integration tests talk to the real native local stack. `scripts/test` starts it; when
pytest is run alone, the session fixture starts it (idempotent: a running stack is reused)."""

from __future__ import annotations

import pytest

from fresh.settings import Settings
from stack.services import LocalStack


@pytest.fixture(scope="session", autouse=True)
def local_stack(settings: Settings) -> LocalStack:
    stack = LocalStack(settings)
    stack.up()
    return stack


@pytest.fixture(scope="session")
def bootstrap(settings: Settings) -> str:
    return settings.kafka_bootstrap


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The one embedded ClickHouse data folder of this test process: chdb serves a single path
    per process, so every integration test that opens a chdb session uses this one."""
    return str(tmp_path_factory.mktemp("chdb"))
