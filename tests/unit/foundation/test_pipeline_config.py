"""The pipeline config: the repo's file loads, names are derived once, bad input is one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fresh.errors import ConfigError
from fresh.pipeline import PipelineConfig, load_pipeline_config
from fresh.settings import REPO_ROOT


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _repo_config() -> dict:
    return yaml.safe_load((REPO_ROOT / "pipeline.yaml").read_text(encoding="utf-8"))


def test_repo_pipeline_config_defines_the_four_entities(pipeline: PipelineConfig) -> None:
    assert set(pipeline.entities) == {"stores", "products", "customers", "purchases"}
    assert pipeline.clickhouse.raw_database != pipeline.clickhouse.mart_database


def test_topic_names_are_derived_debezium_style(pipeline: PipelineConfig) -> None:
    stores = pipeline.entity("stores")
    assert stores.cdc_topic == f"{pipeline.kafka.topic_prefix}.{pipeline.mongodb.database}.stores"
    assert stores.secure_topic == stores.cdc_topic + pipeline.kafka.secure_suffix
    assert pipeline.entity_for_topic(stores.secure_topic) is stores
    assert len(set(pipeline.cdc_topics) | set(pipeline.secure_topics) | {pipeline.kafka.dlq_topic}) == 9


def test_a_rename_is_one_line(tmp_path: Path) -> None:
    data = _repo_config()
    data["kafka"]["topic_prefix"] = "renamed"
    cfg = load_pipeline_config(_write(tmp_path, data))
    assert all(t.startswith("renamed.") for t in cfg.cdc_topics + cfg.secure_topics)


def test_missing_key_names_file_and_key(tmp_path: Path) -> None:
    data = _repo_config()
    del data["entities"]["customers"]["business_key"]
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError, match=r"pipeline.yaml: entities.customers.business_key: Field required"):
        load_pipeline_config(path)


def test_bad_value_names_file_and_key(tmp_path: Path) -> None:
    data = _repo_config()
    data["clickhouse"]["raw_database"] = "raw-db; DROP"
    with pytest.raises(ConfigError, match=r"clickhouse.raw_database: .*not a plain identifier"):
        load_pipeline_config(_write(tmp_path, data))


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    data = _repo_config()
    data["kafka"]["topic_prefx"] = "typo"
    with pytest.raises(ConfigError, match=r"kafka.topic_prefx: Extra inputs are not permitted"):
        load_pipeline_config(_write(tmp_path, data))


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"file not found .*FRESH_PIPELINE_CONFIG"):
        load_pipeline_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("kafka: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: not valid YAML"):
        load_pipeline_config(bad)


def test_unknown_entity_lists_the_known_ones(pipeline: PipelineConfig) -> None:
    with pytest.raises(ConfigError, match="unknown entity 'shops'; known entities: customers, products"):
        pipeline.entity("shops")


def test_derived_names_cannot_be_set_in_the_file(tmp_path: Path) -> None:
    data = _repo_config()
    data["entities"]["stores"]["cdc_topic"] = "elsewhere"
    with pytest.raises(ConfigError, match=r"entities.stores: cdc_topic is derived"):
        load_pipeline_config(_write(tmp_path, data))


def test_isolated_copy_renames_everything_that_could_collide(pipeline: PipelineConfig) -> None:
    other = pipeline.isolated("run42")
    assert not set(other.cdc_topics + other.secure_topics) & set(pipeline.cdc_topics + pipeline.secure_topics)
    assert other.kafka.dlq_topic != pipeline.kafka.dlq_topic
    assert other.kafka.connector_name != pipeline.kafka.connector_name
    assert other.clickhouse.raw_database != pipeline.clickhouse.raw_database
    assert other.clickhouse.consumer_group != pipeline.clickhouse.consumer_group
    assert other.pii_processor.consumer_group != pipeline.pii_processor.consumer_group
    assert other.entity("customers").pii == pipeline.entity("customers").pii
    with pytest.raises(ConfigError, match="letters and digits"):
        pipeline.isolated("a-b")


def test_to_yaml_round_trips(tmp_path: Path, pipeline: PipelineConfig) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(pipeline.to_yaml(), encoding="utf-8")
    assert load_pipeline_config(path) == pipeline
