"""The Connect workers of the local stack, without starting one: one group, one set of internal
topics, a REST port, PID file, log and marker per worker, and a failover delay far below Kafka's
5-minute default."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from fresh.errors import StackError
from fresh.settings import load_settings
from freshctl.cli import freshctl
from stack import MAX_CONNECT_WORKERS, connect_service_names
from stack.kafka_security import ensure_passwords, ensure_tls
from stack.services import CONNECT_REBALANCE_DELAY_MS, LocalStack


def _properties(path: Path) -> dict[str, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def _stack(tmp_path: Path, workers: int) -> LocalStack:
    settings = load_settings(stack_home=tmp_path, connect_port=18000, connect_workers=workers)
    assert settings.kafka_ca_file is not None
    ensure_tls(settings.kafka_ca_file.parent)  # what `stack up` makes before it writes the worker configs
    ensure_passwords(settings)
    return LocalStack(settings)


def test_one_worker_by_default(tmp_path: Path) -> None:
    stack = LocalStack(load_settings(stack_home=tmp_path))
    assert [n for n in stack.services if n.startswith("connect")] == ["connect"]


@pytest.mark.parametrize("workers", [2, 3])
def test_workers_share_one_group_and_its_topics_on_their_own_ports(tmp_path: Path, workers: int) -> None:
    stack = _stack(tmp_path, workers)
    names = connect_service_names(workers)
    assert [n for n in stack.services if n.startswith("connect")] == names
    props = []
    for i, name in enumerate(names):
        service = stack.services[name]
        port = 18000 + i
        assert service.address == f"http://127.0.0.1:{port}" and list(service.ports.values()) == [port]
        command = service.command()
        assert stack.marker(name) in command
        props.append(_properties(Path(command[-1])))
        assert props[-1]["listeners"] == f"http://127.0.0.1:{port}"
        assert props[-1]["rest.advertised.port"] == str(port)
        assert int(props[-1]["scheduled.rebalance.max.delay.ms"]) == CONNECT_REBALANCE_DELAY_MS <= 30_000
    shared = ("group.id", "config.storage.topic", "offset.storage.topic", "status.storage.topic", "bootstrap.servers")
    for key in shared:
        assert len({p[key] for p in props}) == 1, key
    assert len({stack.marker(n) for n in names}) == len({stack.log_file(n) for n in names}) == workers


def test_a_running_second_worker_is_seen_without_the_setting(tmp_path: Path) -> None:
    """`down`, `status` and `logs` after `stack up --connect-workers 2`, with the default setting."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "connect-2.pid").write_text("1", encoding="utf-8")
    stack = _stack(tmp_path, 1)
    assert "connect-2" in stack.services
    assert stack.wanted(["connect"]) == ["connect", "connect-2"]
    assert stack.wanted(["kafka"]) == ["kafka"]


def test_too_many_workers_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StackError, match=f"at most {MAX_CONNECT_WORKERS} Connect workers"):
        _stack(tmp_path, MAX_CONNECT_WORKERS + 1)


def test_dry_run_lists_the_second_worker(tmp_path: Path) -> None:
    env = {"FRESH_STACK_HOME": str(tmp_path), "FRESH_CONNECT_PORT": "18000"}
    result = CliRunner().invoke(freshctl, ["stack", "up", "--connect-workers", "2", "--dry-run", "-o", "json"],
                                env=env)
    assert result.exit_code == 0, result.output
    assert '"connect-2"' in result.output
    bad = CliRunner().invoke(freshctl, ["stack", "up", "--connect-workers", str(MAX_CONNECT_WORKERS + 1)], env=env)
    assert bad.exit_code == 2
