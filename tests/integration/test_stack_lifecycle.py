"""The stack manager on a second, isolated stack (own folder, own free ports, shared jar cache):
`up` is idempotent, a taken port is refused with one clear line, `down` leaves no process behind."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from fresh.clients import mongo_client
from fresh.errors import DownloadError, PortInUseError
from fresh.settings import load_settings
from stack import jars
from stack.services import LocalStack
from stack.versions import load_versions


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def isolated(tmp_path: Path, local_stack: LocalStack) -> LocalStack:
    ports = {name: _free_port() for name in ("kafka_port", "kafka_controller_port", "connect_port", "mongo_port")}
    settings = load_settings(stack_home=tmp_path / "stack", **ports)
    return LocalStack(settings, jars_root=local_stack.jars_root)


def test_up_twice_reuses_and_down_leaves_nothing(isolated: LocalStack) -> None:
    try:
        first = isolated.up()
        assert sorted(first.started) == ["connect", "kafka", "mongo"]
        pids = {name: isolated.pid_of(name) for name in isolated.services}
        assert all(pids.values())

        second = isolated.up()
        assert second.started == []
        assert sorted(second.reused) == ["connect", "kafka", "mongo"]
        assert {name: isolated.pid_of(name) for name in isolated.services} == pids
        assert sorted(isolated.our_processes()) == sorted(p for p in pids.values() if p)
        assert {row["service"]: row["state"] for row in isolated.status()}["connect"] == "ready"
        # A fresh, empty Mongo server still lists `local`, as mongod does: Debezium's config validation
        # reads an empty list as "User doesn't have rights to list databases".
        with mongo_client(isolated.settings) as client:
            assert client.list_database_names() == ["local"]
    finally:
        stopped = isolated.down(wipe=True)
    assert sorted(stopped) == ["connect", "kafka", "mongo"]
    assert isolated.our_processes() == []
    assert all(isolated.pid_of(name) is None for name in isolated.services)


def test_a_taken_port_is_refused_with_the_setting_to_change(isolated: LocalStack) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", isolated.settings.mongo_port))
        squatter.listen()
        with pytest.raises(PortInUseError, match=r"port \d+ .*mongo.*FRESH_MONGO_PORT"):
            isolated.up(["mongo"])
    assert isolated.our_processes() == []


def test_a_failed_download_names_the_log_and_the_fix(tmp_path: Path) -> None:
    versions = {**load_versions(), "MONGO_JAVA_SERVER_VERSION": "0.0.0-does-not-exist"}
    bundle = next(b for b in jars.BUNDLES if b.name == "mongo")
    with pytest.raises(DownloadError, match=r"Maven could not fetch the mongo jars .*maven-mongo.log.*versions.env"):
        jars.fetch_bundle(tmp_path / "jars", bundle, versions, tmp_path / "logs")
    assert not (tmp_path / "jars" / "mongo").exists()

