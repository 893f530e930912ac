"""`freshctl status` with nothing running: quick, one line per problem, exit 1, unhealthy rows first."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from click.testing import CliRunner

from freshctl.cli import freshctl


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_status_of_a_stopped_pipeline_says_what_is_down(tmp_path: Path) -> None:
    env = {"FRESH_STACK_HOME": str(tmp_path / "stack"), "FRESH_KAFKA_PORT": str(_free_port()),
           "FRESH_CONNECT_PORT": str(_free_port()), "FRESH_MONGO_PORT": str(_free_port()),
           "FRESH_KAFKA_BOOTSTRAP": "", "FRESH_CONNECT_URL": "", "FRESH_MONGO_URI": "",
           "FRESH_CHDB_PATH": str(tmp_path / "stack" / "chdb"), "FRESH_CONNECT_TIMEOUT_S": "2"}
    result = CliRunner().invoke(freshctl, ["status", "-o", "json"], env=env)
    assert result.exit_code == 1
    rows = json.loads(result.stdout)
    assert rows and all(r["healthy"] == "UNHEALTHY" for r in rows)
    by = {(r["stage"], r["component"]): r for r in rows}
    assert by[("service", "processor")]["state"] == "stopped"
    assert "freshctl up" in by[("service", "ingest")]["error"]
    assert by[("kafka", f"127.0.0.1:{env['FRESH_KAFKA_PORT']}")]["state"] == "unreachable"
    assert "not running" in by[("freshness", "clickhouse")]["error"]
    assert not any(stage in ("cdc -> _secure", "dlq") for stage, _ in by)
    assert f"{len(rows)} of {len(rows)} stage row(s) unhealthy" in str(result.exception)
