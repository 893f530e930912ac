"""apply / diff / prune / pause / resume / restart against the real Connect worker, with
MirrorMaker's heartbeat connector (ships with Kafka) standing in for a RUNNING connector."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from connectors.apply import ConnectorFailedError, apply, reached, wait_for_state
from connectors.connect_api import ConnectApi
from connectors.diff import diff_config
from connectors.render import render
from fresh.pipeline import PipelineConfig
from fresh.settings import Settings
from fresh.wait import wait_until


def _states(api: ConnectApi, name: str) -> tuple[str, list[str]]:
    status = api.get_status(name)
    return status["connector"]["state"], [t["state"] for t in status["tasks"]]


def test_apply_twice_is_idempotent_and_diff_is_clean(
    api: ConnectApi, settings: Settings, pipeline: PipelineConfig, prefix: str,
    heartbeat_values: Callable[..., Path], freshctl: Callable[..., Any],
) -> None:
    values = heartbeat_values({"a": {}, "b": {}})
    rendered = render(pipeline, settings, "local", extra_values=[values])
    first = apply(api, rendered, settings, timeout_s=60)
    assert [(r.connector, r.action) for r in first] == [(f"{prefix}a", "created"), (f"{prefix}b", "created")]
    assert all(_states(api, r.connector) == ("RUNNING", ["RUNNING"]) for r in first)

    second = apply(api, rendered, settings, timeout_s=60)
    assert [r.action for r in second] == ["unchanged", "unchanged"]
    for connector in rendered.connectors:
        assert diff_config(connector.name, connector.config, api.get_config(connector.name)) == []
    result = freshctl("connectors", "diff", "-e", "local", "-f", str(values))
    assert result.returncode == 0, result.stderr
    assert "no drift" in result.stdout


def test_changed_value_is_drift_with_exit_3_until_applied(
    api: ConnectApi, prefix: str, heartbeat_values: Callable[..., Path], freshctl: Callable[..., Any],
) -> None:
    values = heartbeat_values({"a": {}})
    assert freshctl("connectors", "apply", "-e", "local", "-f", str(values)).returncode == 0
    changed = heartbeat_values({"a": {"interval_seconds": 7}}, "changed.yaml")

    result = freshctl("connectors", "diff", "-e", "local", "-f", str(changed), "-o", "json")
    assert result.returncode == 3, result.stderr
    assert "emit.heartbeats.interval.seconds" in result.stdout and '"7"' in result.stdout
    assert "drift" not in result.stdout and "difference(s)" in result.stderr

    dry = freshctl("connectors", "apply", "-e", "local", "-f", str(changed), "--dry-run")
    assert "would be updated" in dry.stdout
    assert (api.get_config(f"{prefix}a") or {}).get("emit.heartbeats.interval.seconds") == "1"

    applied = freshctl("connectors", "apply", "-e", "local", "-f", str(changed))
    assert applied.returncode == 0 and "updated" in applied.stdout
    assert freshctl("connectors", "diff", "-e", "local", "-f", str(changed)).returncode == 0


def test_prune_removes_only_managed_connectors_no_longer_in_code(
    api: ConnectApi, settings: Settings, pipeline: PipelineConfig, prefix: str, unique: str,
    heartbeat_values: Callable[..., Path],
) -> None:
    apply(api, render(pipeline, settings, "local", extra_values=[heartbeat_values({"a": {}, "extra": {}})]),
          settings, timeout_s=60)
    # A connector outside the managed prefix (this test's own, standing in for someone else's).
    outsider = f"fresh-outsider-{unique}"
    api.put_config(outsider, {**api.get_config(f"{prefix}extra"), "name": outsider,  # type: ignore[dict-item]
                              "transforms.route.replacement": f"{outsider}.heartbeat"})
    try:
        only_a = render(pipeline, settings, "local", extra_values=[heartbeat_values({"a": {}}, "a.yaml")])
        dry = apply(api, only_a, settings, prune=True, dry_run=True)
        assert [(r.connector, r.action) for r in dry] == [(f"{prefix}a", "unchanged"),
                                                          (f"{prefix}extra", "would be deleted")]
        assert api.get_config(f"{prefix}extra") is not None

        results = apply(api, only_a, settings, prune=True, timeout_s=60)
        assert [(r.connector, r.action) for r in results] == [(f"{prefix}a", "unchanged"),
                                                              (f"{prefix}extra", "deleted")]
        live = api.list_connectors()
        assert f"{prefix}extra" not in live
        assert f"{prefix}a" in live and outsider in live
    finally:
        api.delete(outsider)


def test_pause_resume_restart_and_desired_states_show_in_status(
    api: ConnectApi, settings: Settings, pipeline: PipelineConfig, prefix: str,
    heartbeat_values: Callable[..., Path], freshctl: Callable[..., Any],
) -> None:
    name = f"{prefix}a"
    assert freshctl("connectors", "apply", "-e", "local", "-f", str(heartbeat_values({"a": {}}))).returncode == 0

    assert freshctl("connectors", "pause", name).returncode == 0
    status = freshctl("connectors", "status", name, "-o", "json")
    assert '"state": "PAUSED"' in status.stdout and '"state": "RUNNING"' not in status.stdout

    assert freshctl("connectors", "resume", name).returncode == 0
    assert _states(api, name) == ("RUNNING", ["RUNNING"])

    restart = freshctl("connectors", "restart", name, "--all-tasks")
    assert restart.returncode == 0, restart.stderr
    wait_for_state(api, name, "RUNNING", 60)
    status = freshctl("connectors", "status", name)
    assert "task 0" in status.stdout and "RUNNING" in status.stdout

    # The desired state in the values is applied and awaited too.
    for state in ("PAUSED", "STOPPED", "RUNNING"):
        values = heartbeat_values({"a": {"state": state}}, f"{state}.yaml")
        results = apply(api, render(pipeline, settings, "local", extra_values=[values]), settings, timeout_s=60)
        assert results[0].action == "unchanged"
        assert reached(api, name, state)


def test_failed_task_trace_in_status_and_restart_of_failed_tasks_only(
    api: ConnectApi, settings: Settings, pipeline: PipelineConfig, prefix: str,
    heartbeat_values: Callable[..., Path], freshctl: Callable[..., Any],
) -> None:
    # RegexRouter's replacement names a group the regex lacks: the first heartbeat fails the task.
    values = heartbeat_values({"broken": {"topic": "$3"}, "ok": {}})
    apply(api, render(pipeline, settings, "local", extra_values=[values]), settings, timeout_s=60)
    broken, ok = f"{prefix}broken", f"{prefix}ok"
    with pytest.raises(ConnectorFailedError, match=f"connector {broken} is FAILED"):
        wait_until(lambda: reached(api, broken, "PAUSED"), timeout_s=60, what=f"{broken} to fail",
                   fatal=(ConnectorFailedError,))

    status = freshctl("connectors", "status", broken, "-o", "json")
    (task,) = [r for r in json.loads(status.stdout) if r["part"] == "task 0"]
    assert task["state"] == "FAILED" and "Exception" in task["trace"]
    described = freshctl("connectors", "describe", broken)
    assert "FAILED" in described.stdout and "Exception" in described.stdout

    # By default a restart touches failed tasks only.
    restarted = api.restart(broken)
    assert [t["state"] for t in restarted["tasks"]] == ["RESTARTING"]
    untouched = api.restart(ok)
    assert [t["state"] for t in untouched["tasks"]] == ["RUNNING"]
