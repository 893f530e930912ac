"""One grammar across the CLI (docs/cli.md), checked over the whole command tree: every command
is classified here, so a new one must say whether it writes, lists or waits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from fresh.errors import DriftError, FreshError
from freshctl.cli import GROUPS, freshctl
from freshctl.lazy import load
from freshctl.tree import leaves

REPO = Path(__file__).resolve().parents[3]
COMMANDS = leaves(freshctl)

# Commands that change something (a server, a file, a process): each has --dry-run.
WRITES = {
    "clickhouse ingest", "clickhouse migrate", "down", "up",
    "connectors apply", "connectors delete", "connectors pause", "connectors register", "connectors restart",
    "connectors resume", "connectors stop",
    "grafana render", "grafana snapshot",
    "keys destroy", "keys disable", "keys enable", "keys generate", "keys rotate", "keys wrap",
    "secure run", "seed", "stack down", "stack up",
}
# Commands that print something other than rows, with the reason; every other command has -o table|json.
NO_OUTPUT_OPTION = {
    "completion": "prints a shell script",
    "down": "prints what it stopped, one line",
    "grafana check": "prints one ok line or a one-line diff (exit 3)",
    "grafana render": "prints one line per file it writes",
    "grafana snapshot": "prints one line per picture it draws",
    "config check": "prints one ok line or fails",
    "connectors render": "always prints JSON (one document, or one file per connector)",
    "secure decrypt": "prints the decrypted value or records as they are",
    "stack logs": "prints a log file's tail",
    "clickhouse ingest": "prints running counters until stopped",
}


def _option(cmd: click.Command, flag: str) -> click.Option | None:
    for p in cmd.params:
        if isinstance(p, click.Option) and (flag in p.opts or flag in p.secondary_opts):
            return p
    return None


def test_every_write_has_dry_run_and_nothing_else_claims_one() -> None:
    assert set(WRITES) <= set(COMMANDS)
    for name, cmd in COMMANDS.items():
        has = _option(cmd, "--dry-run") is not None
        assert has == (name in WRITES), f"{name}: --dry-run {'missing' if name in WRITES else 'on a read'}"


def test_listings_and_reports_offer_output_table_or_json() -> None:
    for name, cmd in COMMANDS.items():
        opt = _option(cmd, "--output")
        if name in NO_OUTPUT_OPTION:
            assert opt is None, f"{name}: has -o although listed as without"
            continue
        assert opt is not None and "-o" in opt.opts, f"{name}: no -o/--output"
        assert isinstance(opt.type, click.Choice) and list(opt.type.choices) == ["table", "json"]


def test_every_verb_that_waits_offers_wait_and_no_wait() -> None:
    waiting = {n for n, c in COMMANDS.items() if _option(c, "--timeout") is not None}
    assert waiting, "no command with --timeout found"
    for name in waiting:
        opt = _option(COMMANDS[name], "--wait")
        assert opt is not None and opt.secondary_opts == ["--no-wait"], f"{name}: needs --wait/--no-wait"
        assert opt.default is True


def test_options_only_where_they_act() -> None:
    with_all_tasks = {n for n, c in COMMANDS.items() if _option(c, "--all-tasks")}
    assert with_all_tasks == {"connectors restart"}


def test_the_registry_help_is_the_commands_own() -> None:
    for name, entry in GROUPS.items():
        cmd = load(entry)
        assert cmd.get_short_help_str(limit=200) == entry.short_help, f"GROUPS[{name!r}] help drifted"


HEAVY = ["confluent_kafka", "pydantic", "pymongo", "requests", "jinja2", "chdb", "clickhouse_connect", "faker",
         "cryptography"]


@pytest.mark.parametrize(("args", "env", "not_loaded"), [
    (["--help"], {}, ["connectors", "smt", "clickhouse", "generator", "stack", *HEAVY]),
    *[([group, "--help"], {}, HEAVY) for group in GROUPS],
    ([], {"_FRESHCTL_COMPLETE": "bash_complete", "COMP_WORDS": "freshctl ", "COMP_CWORD": "1"},
     ["connectors", "smt", "clickhouse", "generator", "stack", *HEAVY]),
    ([], {"_FRESHCTL_COMPLETE": "bash_complete", "COMP_WORDS": "freshctl connectors render -e ", "COMP_CWORD": "4"},
     HEAVY),
])
def test_help_and_tab_import_only_what_they_show(args: list[str], env: dict[str, str], not_loaded: list[str]) -> None:
    """The lazy groups at work: a TAB or --help loads no driver (docs/benchmarks.md has the times)."""
    code = ("import atexit, sys\n"
            "atexit.register(lambda: print('LOADED', sorted({m.split('.')[0] for m in sys.modules}),\n"
            "                              file=sys.stderr))\n"
            "from freshctl.cli import freshctl\n"
            f"freshctl.main({args!r}, prog_name='freshctl')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False,
                         env={**os.environ, **env})
    assert out.returncode == 0, out.stderr
    loaded = set(eval(out.stderr.split("LOADED ", 1)[1]))  # noqa: S307 - our own printed list
    assert out.stdout.strip()
    assert not loaded & set(not_loaded), loaded & set(not_loaded)


@pytest.mark.parametrize("args", [
    ["--log-level", "bogus", "config", "check"],
    ["connectors", "render", "-e", "bogus"],
    ["connectors", "lint", "--offline", "--allow", "bogus"],
    ["stack", "logs", "bogus"],
    ["completion", "tcsh"],
    ["no-such-command"],
    ["connectors", "pause", "x", "--all-tasks"],
])
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = CliRunner().invoke(freshctl, args)
    assert result.exit_code == 2, result.output


def test_version() -> None:
    result = CliRunner().invoke(freshctl, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("freshctl, version ")


def test_drift_exits_3_everywhere() -> None:
    from clickhouse import cli as clickhouse_cli
    from connectors.diff import DriftError as ConnectorsDrift

    assert issubclass(ConnectorsDrift, DriftError) and DriftError.exit_code == 3
    assert issubclass(DriftError, FreshError)
    assert clickhouse_cli.DriftError is DriftError


def _fresh(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**{k: v for k, v in os.environ.items() if not k.startswith("FRESH_")}, **(env or {})}
    return subprocess.run([sys.executable, "-m", "freshctl", *args], capture_output=True, text=True, env=full,
                          cwd=REPO, check=False, timeout=120)


@pytest.mark.parametrize("environment", ["local", "compose", "prod"])
def test_render_prints_one_json_document(environment: str) -> None:
    result = _fresh("connectors", "render", "-e", environment)
    assert result.returncode == 0, result.stderr
    docs = json.loads(result.stdout)  # one document: a second one would fail here
    assert isinstance(docs, list) and docs and all({"name", "config"} <= set(d) for d in docs)


@pytest.mark.parametrize("environment", ["compose", "prod"])
def test_render_takes_nothing_from_the_callers_environment(environment: str) -> None:
    plain = _fresh("connectors", "render", "-e", environment)
    poked = _fresh("connectors", "render", "-e", environment, env={
        "FRESH_KAFKA_BOOTSTRAP": "caller-broker:1", "FRESH_STACK_HOME": "/caller/stack", "FRESH_KAFKA_PORT": "1"})
    assert plain.returncode == poked.returncode == 0, poked.stderr
    assert poked.stdout == plain.stdout
    assert "caller" not in poked.stdout


def test_render_out_dir_writes_one_file_per_connector(tmp_path: Path) -> None:
    result = _fresh("connectors", "render", "-e", "prod", "--out-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    files = sorted(tmp_path.glob("*.json"))
    assert len(files) == 2 and all(json.loads(f.read_text())["config"] for f in files)


def test_clickhouse_plan_reports_pending_migrations_as_drift(tmp_path: Path) -> None:
    result = _fresh("clickhouse", "plan", env={"FRESH_CHDB_PATH": str(tmp_path / "chdb"),
                                               "FRESH_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    assert result.returncode == 3, result.stderr
    assert "pending" in result.stdout and "run `freshctl clickhouse migrate`" in result.stderr


def test_migrate_dry_run_writes_no_ledger(tmp_path: Path) -> None:
    env = {"FRESH_CHDB_PATH": str(tmp_path / "chdb"), "FRESH_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    assert _fresh("clickhouse", "migrate", "--dry-run", env=env).returncode == 0
    assert _fresh("clickhouse", "plan", env=env).returncode == 3  # still pending: nothing was applied
