"""Every template x environment renders to valid JSON with the keys the pipeline relies on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.render import RenderError, known_environments, render, to_json
from fresh.pipeline import PipelineConfig
from fresh.settings import Settings

ENVIRONMENTS = known_environments()
DEBEZIUM_REQUIRED = {
    "connector.class": "io.debezium.connector.mongodb.MongoDbConnector",
    "capture.mode": "change_streams_update_full",
    "snapshot.mode": "initial",
    "transforms.unwrap.type": "io.debezium.connector.mongodb.transforms.ExtractNewDocumentState",
    "transforms.unwrap.delete.tombstone.handling.mode": "rewrite-with-tombstone",
    "transforms.unwrap.add.fields": "op,source.ts_ms",
    "transforms.unwrap.add.fields.prefix": "__",
    "value.converter": "org.apache.kafka.connect.json.JsonConverter",
    "value.converter.schemas.enable": "false",
    "key.converter.schemas.enable": "false",
    "errors.log.enable": "true",
}


def _all_enabled(tmp_path: Path) -> Path:
    extra = tmp_path / "all.yaml"
    extra.write_text("connectors:\n  mongodb_source: {enabled: true}\n  heartbeat_canary: {enabled: true}\n")
    return extra


def test_environments_are_known() -> None:
    assert set(ENVIRONMENTS) == {"local", "compose", "prod"}


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_template_renders_valid_json(environment: str, pipeline: PipelineConfig, settings: Settings,
                                           tmp_path: Path) -> None:
    rendered = render(pipeline, settings, environment, extra_values=[_all_enabled(tmp_path)])
    templates = {c.template for c in rendered.connectors}
    assert templates == {p.name for p in Path("connectors/templates").glob("*.j2")}
    for connector in rendered.connectors:
        body = json.loads(to_json(connector))
        assert body["name"] == connector.name
        assert all(isinstance(v, str) for v in body["config"].values())
        assert connector.state in ("RUNNING", "PAUSED", "STOPPED")


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_debezium_config_has_required_keys(environment: str, pipeline: PipelineConfig, settings: Settings) -> None:
    rendered = render(pipeline, settings, environment)
    (source,) = [c for c in rendered.connectors if c.template == "mongodb-source.json.j2"]
    config = source.config
    for key, value in DEBEZIUM_REQUIRED.items():
        assert config[key] == value, key
    assert source.name == pipeline.kafka.connector_name
    assert config["topic.prefix"] == pipeline.kafka.topic_prefix
    assert int(config["heartbeat.interval.ms"]) > 0
    patterns = config["collection.include.list"].split(",")
    assert len(patterns) == len(pipeline.entities)
    assert all(p.startswith("^") and p.endswith("$") for p in patterns)
    assert int(config["topic.creation.cdc.retention.ms"]) <= 86_400_000
    assert config["mongodb.connection.string"].startswith("${")
    assert rendered.managed_prefix and source.name.startswith(rendered.managed_prefix)


def test_names_come_from_the_pipeline_config(pipeline: PipelineConfig, settings: Settings) -> None:
    renamed = pipeline.model_copy(update={"kafka": pipeline.kafka.model_copy(
        update={"connector_name": "probablyfresh-other", "topic_prefix": "cdc2"})})
    (source,) = render(renamed, settings, "local").connectors
    assert source.name == "probablyfresh-other"
    assert source.config["topic.prefix"] == "cdc2"


def test_unknown_environment_lists_known_ones(pipeline: PipelineConfig, settings: Settings) -> None:
    with pytest.raises(RenderError, match="unknown environment 'staging'; known environments: compose, local, prod"):
        render(pipeline, settings, "staging")


def test_template_error_names_file_and_line(pipeline: PipelineConfig, settings: Settings, tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "mongodb-source.json.j2").write_text('{\n  "a": "1",\n  "b": {{ c.no_such_value | tojson }}\n}\n')
    with pytest.raises(RenderError) as info:
        render(pipeline, settings, "local", templates_dir=templates)
    assert "mongodb-source.json.j2:3" in str(info.value)
    assert "no_such_value" in str(info.value)


def test_template_syntax_error_names_file_and_line(pipeline: PipelineConfig, settings: Settings,
                                                   tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "mongodb-source.json.j2").write_text('{\n\n  "a": {{ oops ( }}\n}\n')
    with pytest.raises(RenderError, match=r"mongodb-source\.json\.j2:3"):
        render(pipeline, settings, "local", templates_dir=templates)


def test_missing_values_key_fails(pipeline: PipelineConfig, settings: Settings, tmp_path: Path) -> None:
    extra = tmp_path / "broken.yaml"
    extra.write_text("connectors:\n  mongodb_source:\n    heartbeat_interval_ms: '{{ nope }}'\n")
    with pytest.raises(RenderError, match="heartbeat_interval_ms"):
        render(pipeline, settings, "local", extra_values=[extra])


def test_invalid_state_is_refused(pipeline: PipelineConfig, settings: Settings, tmp_path: Path) -> None:
    extra = tmp_path / "state.yaml"
    extra.write_text("connectors:\n  mongodb_source:\n    state: sleeping\n")
    with pytest.raises(RenderError, match="RUNNING, PAUSED, STOPPED"):
        render(pipeline, settings, "local", extra_values=[extra])


def test_no_secret_value_in_render_output(pipeline: PipelineConfig, tmp_path: Path) -> None:
    secret = "mongodb://admin:s3cr3t-render-check@db.example:27017/"
    settings = Settings(mongo_uri=secret, stack_home=tmp_path)  # type: ignore[arg-type]
    for environment in ENVIRONMENTS:
        for connector in render(pipeline, settings, environment, extra_values=[_all_enabled(tmp_path)]).connectors:
            assert "s3cr3t-render-check" not in to_json(connector)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_debezium_latency_knobs_come_from_the_pipeline_config(environment: str, pipeline: PipelineConfig,
                                                               settings: Settings) -> None:
    raw = pipeline.model_dump(mode="json")
    raw["debezium"] = {"poll_interval_ms": 37, "max_batch_size": 1000}
    tuned = PipelineConfig.model_validate(raw)
    (source,) = [c for c in render(tuned, settings, environment).connectors
                 if c.template == "mongodb-source.json.j2"]
    assert source.config["poll.interval.ms"] == "37"
    assert source.config["max.batch.size"] == "1000"
    assert int(source.config["max.queue.size"]) > 1000  # Debezium refuses a queue not larger than a batch
