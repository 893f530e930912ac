"""A dry run writes nothing: not on the worker, and not the local worker's secret file either."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from connectors.connect_api import ConnectApi


def test_register_dry_run_writes_no_secret_file_and_creates_no_connector(
    api: ConnectApi, prefix: str, tmp_path: Path, freshctl: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"managed_prefix": prefix, "connectors": {
        "mongodb_source": {"name": f"{prefix}src"}, "heartbeat_canary": {"enabled": False}}}))
    home = tmp_path / "stack"
    env = {"FRESH_STACK_HOME": str(home)}
    result = freshctl("connectors", "register", "-e", "local", "-f", str(values), "--dry-run", "-o", "json", env=env)
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = yaml.safe_load(result.stdout)
    assert [(r["connector"], r["action"]) for r in rows] == [(f"{prefix}src", "would be created")]
    assert "not validating" in result.stderr  # its secret file would only be written by a real run
    assert not (home / "secrets").exists()
    assert f"{prefix}src" not in api.list_connectors()
