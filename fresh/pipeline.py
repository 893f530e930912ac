"""The pipeline config (`pipeline.yaml`): every shared name, validated when loaded.

Topic names are derived here and nowhere else: a CDC topic is
`<kafka.topic_prefix>.<mongodb.database>.<collection>` (Debezium's naming), and its protected
copy is that name plus `kafka.secure_suffix`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from fresh.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_TOPIC = re.compile(r"^[A-Za-z0-9._-]+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _identifier(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"{value!r} is not a plain identifier (letters, digits, underscore)")
    return value


def _topic_part(value: str) -> str:
    if not _TOPIC.match(value):
        raise ValueError(f"{value!r} may only hold letters, digits, '.', '_' and '-'")
    return value


Identifier = Annotated[str, AfterValidator(_identifier)]
TopicName = Annotated[str, AfterValidator(_topic_part)]


class MongoConfig(_Strict):
    database: Identifier


class KafkaConfig(_Strict):
    topic_prefix: TopicName
    connector_name: TopicName
    secure_suffix: TopicName = "_secure"
    dlq_topic: TopicName


class ClickHouseConfig(_Strict):
    raw_database: Identifier
    mart_database: Identifier
    consumer_group: TopicName


class Entity(_Strict):
    name: str = ""
    collection: Identifier
    business_key: Identifier
    # Derived from the kafka section unless set explicitly.
    cdc_topic: str = ""
    secure_topic: str = ""


class PipelineConfig(_Strict):
    mongodb: MongoConfig
    kafka: KafkaConfig
    clickhouse: ClickHouseConfig
    entities: dict[str, Entity] = Field(min_length=1)

    @model_validator(mode="after")
    def _derive_topics(self) -> PipelineConfig:
        derived = {}
        for name, entity in self.entities.items():
            _identifier(name)
            cdc = entity.cdc_topic or f"{self.kafka.topic_prefix}.{self.mongodb.database}.{entity.collection}"
            derived[name] = entity.model_copy(
                update={
                    "name": name,
                    "cdc_topic": cdc,
                    "secure_topic": entity.secure_topic or cdc + self.kafka.secure_suffix,
                }
            )
        object.__setattr__(self, "entities", derived)
        return self

    def entity(self, name: str) -> Entity:
        try:
            return self.entities[name]
        except KeyError:
            known = ", ".join(sorted(self.entities))
            raise ConfigError(f"unknown entity {name!r}; known entities: {known}") from None

    def entity_for_topic(self, topic: str) -> Entity:
        for entity in self.entities.values():
            if topic in (entity.cdc_topic, entity.secure_topic):
                return entity
        raise ConfigError(f"topic {topic!r} belongs to no entity of the pipeline config")

    @property
    def cdc_topics(self) -> list[str]:
        return [e.cdc_topic for e in self.entities.values()]

    @property
    def secure_topics(self) -> list[str]:
        return [e.secure_topic for e in self.entities.values()]


def load_pipeline_config(path: Path) -> PipelineConfig:
    """Load and validate the pipeline config; any problem is one line naming file and key."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (set FRESH_PIPELINE_CONFIG to its path)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} is not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{path}: {key}: {msg}") from None
