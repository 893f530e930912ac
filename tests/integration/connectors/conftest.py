"""Connector tests share the Connect worker with other people: every connector a test creates
carries a per-run prefix, and only connectors with that prefix are deleted afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from connectors.connect_api import ConnectApi
from fresh.settings import REPO_ROOT, Settings
from stack.kafka_security import grant_connect_topics

FRESHCTL = str(Path(sys.executable).parent / "freshctl")


@pytest.fixture
def api(settings: Settings) -> ConnectApi:
    return ConnectApi.from_settings(settings)


@pytest.fixture
def prefix(unique: str, api: ConnectApi, settings: Settings) -> Iterator[str]:
    """`fresh-it-<uuid>-`: the managed prefix of this test (connectors, and topics pf-connect may
    write: `fresh-it-<uuid>`); its connectors are deleted at the end."""
    value = f"fresh-it-{unique}-"
    grant_connect_topics(settings, f"fresh-it-{unique}")
    yield value
    for name in api.list_connectors():
        if name.startswith(value):
            api.delete(name)


@pytest.fixture
def heartbeat_values(tmp_path: Path, prefix: str) -> Callable[..., Path]:
    """Write a values file with heartbeat canaries `{suffix: overrides}` and the Debezium source off."""

    def write(canaries: dict[str, dict[str, object]], filename: str = "values.yaml") -> Path:
        connectors: dict[str, object] = {"mongodb_source": {"enabled": False}, "heartbeat_canary": {"enabled": False}}
        for suffix, overrides in canaries.items():
            connectors[f"hb_{suffix}"] = {
                "template": "mirror-heartbeat.json.j2", "name": f"{prefix}{suffix}", "state": "RUNNING",
                "topic": f"{prefix}{suffix}.heartbeat", "interval_seconds": 1, "replication_factor": 1,
                **overrides,
            }
        path = tmp_path / filename
        path.write_text(yaml.safe_dump({"managed_prefix": prefix, "connectors": connectors}))
        return path

    return write


@pytest.fixture
def freshctl(settings: Settings) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real CLI; `env` entries are added to the environment."""

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [FRESHCTL, *args], capture_output=True, text=True, timeout=180, cwd=REPO_ROOT,
            # the shared stack's Kafka CA and users, also where a test moves FRESH_STACK_HOME to tmp
            env={**os.environ, "FRESH_KAFKA_CA_FILE": str(settings.kafka_ca_file),
                 "FRESH_KAFKA_USERS_DIR": str(settings.kafka_users_dir), **(env or {})}, check=False,
        )

    return run
