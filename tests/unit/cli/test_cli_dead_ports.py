"""Every command of the CLI, run as a user would with every server address pointed at a dead
port: the ones that need a server fail in one line on stderr that names the server's setting,
with exit 1, no traceback and no client-library log line, within a generous bound; the others
still work. A new command must be added to one of the tables below, or the coverage test fails.

The "dead" ports are bound by this test and never listened on, so a connection is refused at
once and no other process can take them meanwhile. The bound is a correctness bound (seconds,
not a benchmark): a command that hangs on a dead server for its default 30-60 s wait fails it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fresh.settings import Settings
from freshctl.cli import freshctl
from freshctl.tree import leaves
from stack.kafka_security import ensure_passwords, ensure_tls

BOUND_S = 20.0
CONNECTOR = "probablyfresh-mongodb-source"

# command -> (arguments that make it talk to its server, the setting its error line must name)
NEEDS_SERVER: dict[str, tuple[list[str], str]] = {
    "clickhouse audit": ([], "FRESH_CLICKHOUSE_PORT"),
    "clickhouse ingest": (["--seconds", "1"], "FRESH_CLICKHOUSE_PORT"),
    "clickhouse migrate": ([], "FRESH_CLICKHOUSE_PORT"),
    "clickhouse plan": ([], "FRESH_CLICKHOUSE_PORT"),
    "clickhouse verify": ([], "FRESH_CLICKHOUSE_PORT"),
    "connectors apply": (["-e", "local"], "FRESH_CONNECT_URL"),
    "connectors delete": ([CONNECTOR], "FRESH_CONNECT_URL"),
    "connectors describe": ([CONNECTOR], "FRESH_CONNECT_URL"),
    "connectors diff": (["-e", "local"], "FRESH_CONNECT_URL"),
    "connectors get": ([], "FRESH_CONNECT_URL"),
    "connectors lint": (["-e", "local"], "FRESH_CONNECT_URL"),
    "connectors offsets": ([CONNECTOR], "FRESH_CONNECT_URL"),
    "connectors pause": ([CONNECTOR], "FRESH_CONNECT_URL"),
    "connectors register": (["-e", "local"], "FRESH_CONNECT_URL"),
    "connectors restart": ([CONNECTOR], "FRESH_CONNECT_URL"),
    "connectors resume": ([CONNECTOR], "FRESH_CONNECT_URL"),
    "connectors status": ([CONNECTOR], "FRESH_CONNECT_URL"),
    "connectors stop": ([CONNECTOR], "FRESH_CONNECT_URL"),
    "connectors validate": (["-e", "local"], "FRESH_CONNECT_URL"),
    "grafana snapshot": (["--dry-run"], "FRESH_CLICKHOUSE_PORT"),
    # The stack's own ports are taken (by this test): `up` refuses at once, naming the first one's setting.
    "up": ([], "FRESH_MONGO_PORT"),
    "secure health": ([], "FRESH_KAFKA_BOOTSTRAP"),
    "secure run": ([], "FRESH_KAFKA_BOOTSTRAP"),
    "seed": ([], "FRESH_MONGO_URI"),
    # The stack's own ports are taken (by this test): `up` refuses at once, naming the setting.
    "stack up": (["--service", "kafka"], "FRESH_KAFKA_PORT"),
}

# command -> (arguments, expected exit code): these need no server and must not try one.
OFFLINE: dict[str, tuple[list[str], int]] = {
    "completion": (["bash"], 0),
    "down": (["--dry-run"], 0),
    "status": ([], 1),  # reports every stage unhealthy: the table on stdout, one error line
    "config check": ([], 0),
    "config topics": ([], 0),
    "config scale": ([], 0),
    "connectors render": (["-e", "local"], 0),
    "grafana check": ([], 0),
    "grafana list": ([], 0),
    "grafana render": (["--dry-run"], 0),
    "keys generate": (["--dry-run"], 1),  # refuses: the fixture's keyring exists (a local check, one line)
    "keys get": ([], 0),
    "keys rotate": (["--dry-run"], 0),
    "keys disable": (["k0", "--dry-run"], 1),  # refuses: no key k0 (a local check, one line)
    "keys enable": (["k0", "--dry-run"], 1),
    "keys destroy": (["k0", "--yes", "--dry-run"], 1),
    "keys wrap": (["--dry-run"], 1),  # refuses: no KEK set (a local check, one line)
    "secure decrypt": (["--entity", "customers"], 2),  # a usage error: no VALUE and no --record
    "secure policy": ([], 0),
    "stack down": (["--dry-run"], 0),
    "stack logs": (["kafka"], 0),
    "stack status": ([], 0),
}


def test_every_command_is_covered() -> None:
    commands = set(leaves(freshctl))
    assert commands == set(NEEDS_SERVER) | set(OFFLINE), (
        f"classify new commands: {sorted(commands - set(NEEDS_SERVER) - set(OFFLINE))}; "
        f"drop removed ones: {sorted((set(NEEDS_SERVER) | set(OFFLINE)) - commands)}"
    )


@pytest.fixture(scope="module")
def dead_ports() -> Iterator[dict[str, int]]:
    socks = []
    ports = {}
    for name in ("kafka", "controller", "connect", "mongo", "clickhouse"):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        socks.append(s)
        ports[name] = s.getsockname()[1]
    yield ports
    for s in socks:
        s.close()


@pytest.fixture(scope="module")
def env(dead_ports: dict[str, int], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("dead-ports")
    p = dead_ports
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRESH_")}
    env.update({
        "FRESH_KAFKA_BOOTSTRAP": f"127.0.0.1:{p['kafka']}",
        "FRESH_CONNECT_URL": f"http://127.0.0.1:{p['connect']}",
        "FRESH_MONGO_URI": f"mongodb://127.0.0.1:{p['mongo']}/?directConnection=true",
        "FRESH_CLICKHOUSE_BACKEND": "server",
        "FRESH_CLICKHOUSE_PORT": str(p["clickhouse"]),
        "FRESH_CLICKHOUSE_DASHBOARD_PASSWORD": "not-a-secret",
        "FRESH_KAFKA_PORT": str(p["kafka"]),
        "FRESH_KAFKA_CONTROLLER_PORT": str(p["controller"]),
        "FRESH_CONNECT_PORT": str(p["connect"]),
        "FRESH_MONGO_PORT": str(p["mongo"]),
        "FRESH_STACK_HOME": str(home / "stack"),
        "FRESH_CHDB_PATH": str(home / "chdb"),
        "FRESH_KEYRING_PATH": str(home / "keyring.json"),
        "FRESH_KEYRING_ALLOW_UNWRAPPED": "true",  # a throwaway keyring
        "COLUMNS": "200",
    })
    result = run(["keys", "generate"], env)
    assert result.returncode == 0, result.stderr
    # The stack's Kafka CA and user passwords exist (as after `stack up`): the dead port is what fails.
    settings = Settings(stack_home=home / "stack")
    ensure_tls(settings.stack_home / "kafka" / "tls")
    ensure_passwords(settings)
    return env


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "freshctl", *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[3], check=False)


@pytest.fixture(scope="module")
def results(env: dict[str, str]) -> dict[str, tuple[subprocess.CompletedProcess[str], float]]:
    """Every command, run a few at a time (each waits mostly on its own dead server): result and seconds."""
    table = {**{c: a for c, (a, _) in NEEDS_SERVER.items()}, **{c: a for c, (a, _) in OFFLINE.items()}}

    def one(command: str) -> tuple[subprocess.CompletedProcess[str], float]:
        started = time.monotonic()
        result = run([*command.split(), *table[command]], env)
        return result, time.monotonic() - started

    with ThreadPoolExecutor(max_workers=4) as pool:
        done = dict(zip(table, pool.map(one, table), strict=True))
    for command, (result, seconds) in sorted(done.items()):  # the table of docs/cli.md (pytest -s shows it)
        print(f"| `freshctl {command}` | {seconds:.1f} s | {result.returncode} |")
    return done


@pytest.mark.parametrize("command", sorted(NEEDS_SERVER))
def test_a_command_needing_a_dead_server_fails_in_one_line(
    command: str, results: dict[str, tuple[subprocess.CompletedProcess[str], float]], dead_ports: dict[str, int]
) -> None:
    _, setting = NEEDS_SERVER[command]
    result, seconds = results[command]
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    line = lines[0]
    assert line.startswith("error: ") and "Traceback" not in line and "%3|" not in line, line
    assert setting in line, f"the error does not name {setting}: {line}"
    assert any(str(port) in line for port in dead_ports.values()), f"the error does not name the address: {line}"
    assert seconds < BOUND_S, f"{command} took {seconds:.1f}s against a dead port"


@pytest.mark.parametrize("command", sorted(OFFLINE))
def test_a_command_needing_no_server_works_without_one(
    command: str, results: dict[str, tuple[subprocess.CompletedProcess[str], float]]
) -> None:
    _, code = OFFLINE[command]
    result, seconds = results[command]
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and "%3|" not in result.stderr
    if code == 1:  # an error is one line (a usage error shows click's usage too)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert seconds < BOUND_S
