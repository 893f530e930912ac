"""The Debezium config against the real worker: Connect's validation, per-field errors, and no
secret in any output. Capturing data is tested in test_debezium_capture.py and, through the whole
pipeline, in tests/integration/test_pipeline_debezium_end_to_end.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.apply import ensure_local_secret
from connectors.connect_api import ConnectApi
from connectors.render import render
from connectors.validate import validate_config
from fresh.pipeline import PipelineConfig
from fresh.settings import Settings


@pytest.fixture
def isolated(tmp_path: Path, prefix: str, unique: str, settings: Settings) -> dict[str, str]:
    """Env for the CLI: a pipeline config with this run's connector name and topic prefix, a fake
    secret, and a stack home in tmp so the real local secret file is never overwritten."""
    raw = yaml.safe_load(settings.pipeline_config.read_text())
    raw["kafka"]["connector_name"] = f"{prefix}src"
    raw["kafka"]["topic_prefix"] = f"fresh-it-{unique}"
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(raw))
    values = tmp_path / "scope.yaml"
    values.write_text(yaml.safe_dump({"managed_prefix": prefix}))
    # The local Mongo server has no auth, so the stand-in secret rides in the URI's appName.
    secret = f"pw{unique}Secret"
    return {
        "FRESH_PIPELINE_CONFIG": str(config),
        "FRESH_MONGO_URI": f"mongodb://127.0.0.1:{settings.mongo_port}/?directConnection=true&appName={secret}",
        "FRESH_STACK_HOME": str(tmp_path / "stack"),
        "SECRET": secret,
        "VALUES": str(values),
    }


def test_rendered_debezium_config_validates(api: ConnectApi, settings: Settings, pipeline: PipelineConfig,
                                            tmp_path: Path) -> None:
    local = Settings(stack_home=tmp_path, mongo_uri=settings.mongo_uri)
    (source,) = render(pipeline, local, "local").connectors
    ensure_local_secret(source, local)
    assert validate_config(api, source.name, source.config) == []


def test_validate_reports_errors_per_field(api: ConnectApi, settings: Settings, pipeline: PipelineConfig,
                                           tmp_path: Path, isolated: dict[str, str],
                                           freshctl: Callable[..., Any]) -> None:
    (source,) = render(pipeline, settings, "local").connectors
    config = {k: v for k, v in source.config.items() if k != "mongodb.connection.string"}
    config["snapshot.mode"] = "sometimes"
    errors = {e.field for e in validate_config(api, source.name, config)}
    assert {"mongodb.connection.string", "snapshot.mode"} <= errors

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"connectors": {"mongodb_source": {"connection_string": ""}}}))
    result = freshctl("connectors", "validate", "-e", "local", "-f", str(bad), env=isolated)
    assert result.returncode == 1
    assert "mongodb.connection.string" in result.stdout
    assert "field error" in result.stderr


def test_no_secret_in_render_validate_diff_describe_status(
    api: ConnectApi, isolated: dict[str, str], prefix: str, freshctl: Callable[..., Any]
) -> None:
    env, secret, name = isolated, isolated["SECRET"], f"{prefix}src"
    args = ("-e", "local", "-f", env["VALUES"])
    outputs = [
        freshctl("connectors", "render", *args, env=env),
        freshctl("connectors", "validate", *args, env=env),
        freshctl("connectors", "register", *args, "--no-wait", env=env),
    ]
    assert all(r.returncode == 0 for r in outputs), [r.stderr for r in outputs]
    assert (Path(env["FRESH_STACK_HOME"]) / "secrets" / "connect-secrets.properties").read_text().count(secret) == 1
    assert api.get_config(name)["mongodb.connection.string"].startswith("${file:")  # type: ignore[index]

    outputs += [
        freshctl("connectors", "diff", *args, env=env),
        freshctl("connectors", "describe", name, env=env),
        freshctl("connectors", "describe", name, "-o", "json", env=env),
        freshctl("connectors", "status", name, env=env),
        freshctl("connectors", "get", "--prefix", prefix, "-o", "json", env=env),
    ]
    assert outputs[3].returncode == 0, outputs[3].stdout
    assert name in outputs[6].stdout and "task 0" in outputs[6].stdout
    for result in outputs:
        assert secret not in result.stdout + result.stderr, result.args
