"""`freshctl`: one command for the whole pipeline. It only parses, calls and prints."""

from __future__ import annotations

import sys

import click

from clickhouse.cli import clickhouse
from connectors.cli import connectors
from fresh.errors import FreshError
from fresh.logs import configure_logging
from fresh.output import OUTPUT_OPTION, print_rows
from fresh.pipeline import load_pipeline_config
from fresh.settings import Settings, load_settings
from generator.cli import seed_command
from smt.cli import keys, secure
from stack.cli import stack
from stack.pipeline_cli import down_command, status_command, up_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", default="WARNING", show_default=True, help="DEBUG, INFO, WARNING or ERROR.")
@click.pass_context
def freshctl(ctx: click.Context, log_level: str) -> None:
    """ProbablyFresh secure CDC pipeline: MongoDB -> Debezium -> PII encryption -> ClickHouse.

    Settings come from FRESH_* environment variables (see README); names shared by every part
    come from pipeline.yaml.

    \b
    Examples:
      freshctl up                   # the whole local pipeline, seeded and checked
      freshctl status               # every stage's health and lag
      freshctl stack up             # only the native local stack
      freshctl config topics        # the topic names every part agrees on
    """
    configure_logging(log_level)
    ctx.obj = load_settings()


@freshctl.group()
def config() -> None:
    """Inspect the pipeline config (pipeline.yaml).

    \b
    Examples:
      freshctl config check
      freshctl config topics -o json
    """


@config.command("check")
@click.pass_obj
def config_check(settings: Settings) -> None:
    """Validate pipeline.yaml; print one line naming the file and key on error.

    \b
    Example:
      FRESH_PIPELINE_CONFIG=other.yaml freshctl config check
    """
    cfg = load_pipeline_config(settings.pipeline_config)
    click.echo(f"{settings.pipeline_config}: ok ({len(cfg.entities)} entities)")


@config.command("topics")
@OUTPUT_OPTION
@click.pass_obj
def config_topics(settings: Settings, output: str) -> None:
    """List each entity with its collection, CDC topic and _secure topic.

    \b
    Example:
      freshctl config topics
    """
    cfg = load_pipeline_config(settings.pipeline_config)
    rows = [
        {"entity": e.name, "collection": f"{cfg.mongodb.database}.{e.collection}",
         "cdc_topic": e.cdc_topic, "secure_topic": e.secure_topic}
        for e in cfg.entities.values()
    ]
    rows.append({"entity": "(dlq)", "collection": "", "cdc_topic": "", "secure_topic": cfg.kafka.dlq_topic})
    print_rows(rows, output)


freshctl.add_command(stack)
freshctl.add_command(keys)
freshctl.add_command(secure)
freshctl.add_command(connectors)
freshctl.add_command(seed_command)
freshctl.add_command(clickhouse)
# The whole local pipeline (issue 13): up, status, down.
freshctl.add_command(up_command)
freshctl.add_command(status_command)
freshctl.add_command(down_command)


def main() -> None:
    try:
        rc = freshctl.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except FreshError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    sys.exit(rc if isinstance(rc, int) else 0)
