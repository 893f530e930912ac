"""The embedded engine's owner answers the others: while `freshctl clickhouse ingest` holds the
chdb folder (a real child process), `open_backend` in this process queries through its endpoint
instead of failing on chdb's lock; requests without the token are refused; the owner file goes
when the owner stops. No server: chdb is embedded and the broker is never reached (no Kafka tables)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from clickhouse.backend import open_backend
from clickhouse.endpoint import ChdbEndpointBackend, owner_file, read_owner
from clickhouse.errors import ClickHouseError
from fresh.settings import load_settings
from fresh.wait import wait_until


@pytest.fixture
def owner(tmp_path: Path, kafka_client_home: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
    chdb = tmp_path / "chdb"
    env = {**os.environ, **kafka_client_home, "FRESH_CHDB_PATH": str(chdb), "FRESH_CLICKHOUSE_BACKEND": "chdb"}
    proc = subprocess.Popen([sys.executable, "-c", "from freshctl.cli import main; main()", "clickhouse", "ingest",
                             "--every", "0.5"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: proc.poll() is not None or read_owner(chdb), timeout_s=120,
                   what="the ingest process to serve its endpoint")
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        yield proc, chdb
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


def test_other_processes_query_through_the_owner(owner: tuple[subprocess.Popen[bytes], Path]) -> None:
    proc, chdb = owner
    backend = open_backend(load_settings(chdb_path=chdb))
    try:
        assert isinstance(backend, ChdbEndpointBackend)
        backend.execute("CREATE DATABASE IF NOT EXISTS t")
        backend.execute("CREATE TABLE IF NOT EXISTS t.x (n UInt32) ENGINE = MergeTree ORDER BY n")
        backend.execute("INSERT INTO t.x VALUES (1), (2), (3)")
        assert backend.query("SELECT sum(n) AS s FROM t.x") == [{"s": 6}]
        with pytest.raises(ClickHouseError, match=r"UNKNOWN_TABLE|does not exist"):
            backend.query("SELECT * FROM t.missing")
    finally:
        backend.close()

    data = json.loads(owner_file(chdb).read_text(encoding="utf-8"))
    assert owner_file(chdb).stat().st_mode & 0o077 == 0  # the token is for this user only
    url = f"http://127.0.0.1:{data['port']}/query"
    assert requests.post(url, json={"sql": "SELECT 1"}, timeout=10).status_code == 401
    assert requests.post(url, json={"sql": "SELECT 1"}, headers={"Authorization": "Bearer wrong"},
                         timeout=10).status_code == 401

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    assert not owner_file(chdb).exists()


def test_a_stale_owner_file_is_ignored(tmp_path: Path) -> None:
    chdb = tmp_path / "chdb"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    owner_file(chdb).write_text(json.dumps({"pid": dead.pid, "port": 1, "token": "x"}), encoding="utf-8")
    assert read_owner(chdb) is None
    assert not owner_file(chdb).exists()
