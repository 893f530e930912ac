"""`freshctl`: one command for the whole pipeline. It only parses, calls and prints.

Each command group is imported only when it is used (`GROUPS`); adding a group is one line there.
"""

from __future__ import annotations

import logging
import sys

import click

from fresh.errors import FreshError
from freshctl.lazy import REMAINING_ARGS, LazyCommand, LazyGroup

HELP_FLAGS = frozenset({"-h", "--help"})
LOG_LEVELS = ("debug", "info", "warning", "error")

# name -> where the command lives and its one-line help (tests/unit/foundation/test_cli_grammar.py
# checks that the line matches the command's own help).
GROUPS: dict[str, LazyCommand] = {
    "clickhouse": LazyCommand(
        "clickhouse.cli:clickhouse",
        "ClickHouse schema: ordered migrations, RAW from *_secure topics, MART, audit and verify."),
    "completion": LazyCommand(
        "freshctl.completion:completion", "Print the shell completion script for bash, zsh or fish."),
    "config": LazyCommand("freshctl.config:config", "Inspect the pipeline config (pipeline.yaml)."),
    "connectors": LazyCommand(
        "connectors.cli:connectors", "Debezium connectors as code: render, lint, validate, diff, apply, inspect."),
    "down": LazyCommand(
        "stack.pipeline_cli:down_command",
        "Stop everything `freshctl up` started (by PID), and nothing else; no process is left behind."),
    "grafana": LazyCommand(
        "grafana.cli:grafana", "Grafana datasource and dashboards as code (grafana/), and pictures of them."),
    "up": LazyCommand(
        "stack.pipeline_cli:up_command",
        "Bring the whole local pipeline up and check it."),
    "keys": LazyCommand(
        "smt.cli:keys",
        "Manage the PII keyring: data and index keys, wrapped by a key-encryption key (docs/pii.md)."),
    "secure": LazyCommand(
        "smt.cli:secure", "The PII processor: CDC topics -> <topic>_secure, exactly once (docs/pii.md)."),
    "seed": LazyCommand(
        "generator.cli:seed_command", "Seed MongoDB with deterministic ProbablyFresh data, or stream changes to it."),
    "status": LazyCommand("stack.pipeline_cli:status_command", "Every stage's health and lag, in one table."),
    "stack": LazyCommand(
        "stack.cli:stack", "Run the native local stack: Kafka, Kafka Connect + Debezium, a MongoDB server, chdb."),
}


@click.group(cls=LazyGroup, lazy=GROUPS, context_settings={"help_option_names": sorted(HELP_FLAGS)})
@click.version_option(package_name="probablyfresh-pipeline", prog_name="freshctl")
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(LOG_LEVELS, case_sensitive=False), help="Log level of freshctl's own log lines.")
@click.pass_context
def freshctl(ctx: click.Context, log_level: str) -> None:
    """ProbablyFresh secure CDC pipeline: MongoDB -> Debezium -> PII encryption -> ClickHouse.

    Settings come from FRESH_* environment variables (see README); names shared by every part
    come from pipeline.yaml. Exit codes: 0 ok, 1 error, 2 usage, 3 drift (docs/cli.md).

    \b
    Examples:
      freshctl stack up             # start the native local stack
      freshctl config topics        # the topic names every part agrees on
      freshctl completion bash      # shell completion (docs/cli.md)
    """
    from fresh.logs import configure_logging

    configure_logging(log_level)
    if HELP_FLAGS.isdisjoint(ctx.meta.get(REMAINING_ARGS, ())):  # help needs no settings: keep it quick
        from fresh.settings import load_settings

        ctx.obj = load_settings()


def main() -> None:
    """The console entry point: one line on stderr for every failure, never a traceback."""
    try:
        rc = freshctl.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:  # usage errors exit 2
        exc.show()
        sys.exit(exc.exit_code)
    except FreshError as exc:
        click.echo(f"error: {_one_line(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug or an unwrapped library error: still one line; the traceback at DEBUG
        logging.getLogger("freshctl").debug("unexpected error", exc_info=True)
        click.echo(f"error: unexpected {type(exc).__name__}: {_one_line(str(exc))} "
                   "(run with --log-level DEBUG for the traceback, and please report it)", err=True)
        sys.exit(1)
    sys.exit(rc if isinstance(rc, int) else 0)


def _one_line(text: str) -> str:
    return " ".join(text.split())
