"""`freshctl up`, `status`, `down` on an isolated stack (own home, keyring, engine and free ports;
the shared jar cache): the whole pipeline comes up seeded and MART equals MongoDB, every status row
is healthy, a SIGKILLed processor is reported and brought back by its supervisor, and `down`
leaves no process behind. The CLI runs as the user runs it: the installed `freshctl` script."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clickhouse.backend import open_backend
from clickhouse.endpoint import ChdbEndpointBackend
from fresh.pipeline import PipelineConfig
from fresh.settings import Settings, load_settings
from fresh.wait import wait_until
from stack.pipeline import mart_mismatch
from stack.services import LocalStack

FRESHCTL = str(Path(sys.executable).parent / "freshctl")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def isolated(tmp_path: Path, local_stack: LocalStack) -> Iterator[tuple[dict[str, str], Settings]]:
    ports = {"kafka_port": _free_port(), "kafka_controller_port": _free_port(), "connect_port": _free_port(),
             "mongo_port": _free_port()}
    home = tmp_path / "stack"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FRESH_") or k in ("FRESH_SKIP_NATIVE", "FRESH_PIPELINE_CONFIG")}
    env.update({f"FRESH_{k.upper()}": str(v) for k, v in ports.items()})
    env.update({"FRESH_STACK_HOME": str(home), "FRESH_STACK_JARS": str(local_stack.jars_root),
                "FRESH_KEYRING_PATH": str(tmp_path / "keys" / "keyring.json")})
    settings = load_settings(stack_home=home, chdb_path=home / "chdb", **ports)
    try:
        yield env, settings
    finally:
        subprocess.run([FRESHCTL, "down", "--wipe"], env=env, capture_output=True, timeout=180, check=False)


def _run(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FRESHCTL, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _status(env: dict[str, str]) -> tuple[int, dict[tuple[str, str], dict[str, Any]]]:
    done = _run(env, "status", "-o", "json")
    rows = json.loads(done.stdout)
    return done.returncode, {(r["stage"], r["component"]): r for r in rows}


def test_up_status_kill_and_down(isolated: tuple[dict[str, str], Settings], pipeline: PipelineConfig) -> None:
    env, settings = isolated
    up = _run(env, "--log-level", "info", "up", timeout=900)  # off a terminal, the steps go to the log
    assert up.returncode == 0, up.stderr[-3000:]
    assert "keyring: created" in up.stderr and "check: MART equals MongoDB" in up.stderr
    assert "audit: ok" in up.stdout
    assert f"snapshots: none in {settings.stack_home / 'snapshots'}" in up.stdout

    # While the ingest service owns the engine, this process queries through it.
    backend = open_backend(settings)
    try:
        assert isinstance(backend, ChdbEndpointBackend)
        assert mart_mismatch(settings, pipeline, backend) == ""
    finally:
        backend.close()

    rc, rows = _status(env)
    assert rc == 0, [r for r in rows.values() if r["healthy"] != "ok"]
    assert all(r["healthy"] == "ok" for r in rows.values())
    for stage in ("service", "connector", "cdc -> _secure", "_secure -> clickhouse", "dlq", "freshness"):
        assert any(s == stage for s, _c in rows), f"no {stage} row"
    for entity in pipeline.entities.values():
        assert rows[("cdc -> _secure", entity.cdc_topic)]["state"] == "lag=0"
        assert rows[("_secure -> clickhouse", entity.secure_topic)]["state"] == "lag=0"

    # A snapshot drawn while the pipeline runs is in the next summary.
    drawn = _run(env, "grafana", "snapshot", "--dashboard", "raw-overview", timeout=300)
    assert drawn.returncode == 0, drawn.stderr[-2000:]
    # Every hop ran over SASL_SSL with its own user; no password shows where a person or a log
    # collector looks: the stack's logs and config files, status, the rendered and the live connector.
    passwords = {p.stem: p.read_text(encoding="utf-8").strip()
                 for p in (settings.stack_home / "kafka" / "users").glob("*.password")}
    assert set(passwords) == {"pf-admin", "pf-connect", "pf-processor", "pf-clickhouse"}
    shown = {"status": _run(env, "status", "-o", "json").stdout,
             "connectors describe": _run(env, "connectors", "describe", pipeline.kafka.connector_name,
                                         "-o", "json").stdout,
             "connectors render": _run(env, "connectors", "render", "-e", "local").stdout}
    assert pipeline.kafka.connector_name in shown["connectors describe"]
    files = [p for folder in ("logs", "conf", "secrets") for p in (settings.stack_home / folder).glob("*")
             if p.is_file()]
    assert any(p.name == "kafka.log" for p in files) and any(p.name == "connect.properties" for p in files)
    shown |= {str(p): p.read_text(encoding="utf-8", errors="replace") for p in files}
    leaks = [(where, user) for where, text in shown.items() for user, pw in passwords.items() if pw in text]
    assert leaks == [], f"Kafka passwords found in {leaks}"

    second = _run(env, "up", timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "started: -;" in second.stdout  # everything reused
    assert f"snapshots: raw-overview.html in {settings.stack_home / 'snapshots'} (oldest" in second.stdout

    state = json.loads((settings.stack_home / "run" / "processor.state.json").read_text(encoding="utf-8"))
    killed = int(state["pid"])
    os.kill(killed, signal.SIGKILL)

    def back() -> dict[str, Any]:
        _rc, rows = _status(env)
        row = rows[("service", "processor")]
        reported = "killed by SIGKILL" in row["error"] and "restarts=1" in row["detail"]
        return row if reported and row["state"] == "running" and f"pid={killed} " not in row["detail"] else {}

    row = wait_until(back, timeout_s=120, what="status to report the killed processor and the supervisor to "
                                               "bring it back")
    assert row["healthy"] == "ok"

    stack = LocalStack(settings)
    assert stack.our_processes()
    down = _run(env, "down", timeout=180)
    assert down.returncode == 0, down.stderr
    assert stack.our_processes() == []
    assert not Path(f"/proc/{killed}").exists()
