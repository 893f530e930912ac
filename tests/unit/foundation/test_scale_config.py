"""Partitions and consumers come from pipeline.yaml `scale:` and agree everywhere (docs/scaling.md):
no consumer group has more members than its topics have partitions."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import ValidationError

from connectors.render import known_environments, render
from fresh.errors import ConfigError
from fresh.pipeline import PipelineConfig, load_pipeline_config
from fresh.scale import scale_rows
from fresh.settings import Settings
from freshctl.cli import freshctl
from stack import processor_services
from stack.worker import processor_instance_id


def with_scale(cfg: PipelineConfig, cluster: str | None = None, **scale: int) -> PipelineConfig:
    raw: dict[str, Any] = cfg.model_dump(mode="json", exclude_none=True)
    raw["scale"].update(scale)
    if cluster:
        raw["clickhouse"]["cluster"] = cluster
    return PipelineConfig.model_validate(raw)


def num_consumers(cfg: PipelineConfig) -> list[int]:
    from clickhouse.render import render_migrations

    sql = "\n".join(m.sql for m in render_migrations(cfg, "b:9092"))
    return [int(n) for n in re.findall(r"kafka_num_consumers = (\d+)", sql)]


def assert_consumers_fit(cfg: PipelineConfig) -> None:
    s = cfg.scale
    instances = processor_services(s.processor_instances)
    assert len(instances) == s.processor_instances <= s.partitions
    assert len({processor_instance_id(n) for n in instances}) == len(instances)  # distinct members, one group
    consumers = num_consumers(cfg)
    # every Kafka table each migration creates (006, then 009 with the knobs) for every entity
    assert consumers and len(consumers) % len(cfg.entities) == 0
    assert consumers == [s.clickhouse_consumers] * len(consumers)
    assert consumers[0] * s.clickhouse_nodes <= s.partitions


def test_the_shipped_config_keeps_consumers_within_partitions(pipeline: PipelineConfig) -> None:
    assert_consumers_fit(pipeline)
    # Both cores of the local machine ingest (docs/benchmarks.md): 2 partitions, 2 consumers.
    assert pipeline.scale.partitions >= 2 and pipeline.scale.clickhouse_consumers >= 2


@pytest.mark.parametrize("environment", known_environments())
def test_debezium_creates_cdc_topics_with_the_configured_partitions(environment: str, pipeline: PipelineConfig,
                                                                    settings: Settings) -> None:
    for partitions in (pipeline.scale.partitions, 7):
        cfg = with_scale(pipeline, partitions=partitions)
        (source, *_) = render(cfg, settings, environment).connectors
        assert source.config["topic.creation.cdc.partitions"] == str(partitions)


@hypothesis_settings(deadline=None, max_examples=60)  # each example renders every migration
@given(partitions=st.integers(1, 12), instances=st.integers(1, 12), consumers=st.integers(1, 12),
       nodes=st.integers(1, 4))
def test_any_accepted_scale_fits_and_any_other_is_refused(partitions: int, instances: int, consumers: int,
                                                          nodes: int) -> None:
    base = load_pipeline_config(Path(__file__).resolve().parents[3] / "pipeline.yaml")
    fits = instances <= partitions and consumers * nodes <= partitions
    try:
        cfg = with_scale(base, cluster="c" if nodes > 1 else None, partitions=partitions,
                         processor_instances=instances, clickhouse_consumers=consumers, clickhouse_nodes=nodes)
    except ValidationError as exc:
        assert not fits
        assert "partitions" in str(exc)
        return
    assert fits
    assert_consumers_fit(cfg)


def test_more_nodes_need_a_cluster(pipeline: PipelineConfig) -> None:
    with pytest.raises(ValidationError, match=r"clickhouse\.cluster"):
        with_scale(pipeline, partitions=4, clickhouse_nodes=2)


def test_too_many_consumers_is_one_line_naming_the_key(tmp_path: Path, settings: Settings) -> None:
    text = settings.pipeline_config.read_text(encoding="utf-8")
    bad = tmp_path / "pipeline.yaml"
    bad.write_text(re.sub(r"processor_instances: \d+", "processor_instances: 9", text), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^.*pipeline\.yaml: scale: processor_instances 9 > partitions \d+"):
        load_pipeline_config(bad)


def test_config_scale_lists_every_setting(pipeline: PipelineConfig, settings: Settings) -> None:
    r = CliRunner().invoke(freshctl, ["config", "scale", "-o", "json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert rows == json.loads(json.dumps(scale_rows(pipeline)))
    shown = {row["setting"]: row["value"] for row in rows}
    assert shown["scale.partitions"] == pipeline.scale.partitions
    assert set(shown) == {f"scale.{k}" for k in type(pipeline.scale).model_fields} | {"clickhouse.cluster"}
