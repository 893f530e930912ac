"""`freshctl config ...`: inspect the pipeline config."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from fresh.output import OUTPUT_OPTION, print_rows

if TYPE_CHECKING:
    from fresh.settings import Settings


@click.group()
def config() -> None:
    """Inspect the pipeline config (pipeline.yaml).

    \b
    Examples:
      freshctl config check
      freshctl config topics -o json
      freshctl config scale
    """


@config.command("check")
@click.pass_obj
def config_check(settings: Settings) -> None:
    """Validate pipeline.yaml; print one line naming the file and key on error.

    \b
    Example:
      FRESH_PIPELINE_CONFIG=other.yaml freshctl config check
    """
    from fresh.pipeline import load_pipeline_config

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
    from fresh.pipeline import load_pipeline_config

    cfg = load_pipeline_config(settings.pipeline_config)
    rows = [
        {"entity": e.name, "collection": f"{cfg.mongodb.database}.{e.collection}",
         "cdc_topic": e.cdc_topic, "secure_topic": e.secure_topic}
        for e in cfg.entities.values()
    ]
    rows.append({"entity": "(dlq)", "collection": "", "cdc_topic": "", "secure_topic": cfg.kafka.dlq_topic})
    print_rows(rows, output)


@config.command("scale")
@OUTPUT_OPTION
@click.pass_obj
def config_scale(settings: Settings, output: str) -> None:
    """List the partitions and consumers (pipeline.yaml `scale:`) and what each sizes.

    Tune them in pipeline.yaml; loading refuses more consumers than partitions (docs/scaling.md).

    \b
    Example:
      freshctl config scale -o json
    """
    from fresh.pipeline import load_pipeline_config
    from fresh.scale import scale_rows

    print_rows(scale_rows(load_pipeline_config(settings.pipeline_config)), output)
