"""The pipeline config (`pipeline.yaml`): every shared name, validated when loaded.

Topic names are derived here and nowhere else: a CDC topic is
`<kafka.topic_prefix>.<mongodb.database>.<collection>` (Debezium's naming), and its protected
copy is that name plus `kafka.secure_suffix`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from fresh.errors import ConfigError
from fresh.yaml_file import read_yaml_mapping

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
    # Latency knobs of the Kafka engine tables (docs/benchmarks.md): a block goes to RAW and MART when
    # it holds max_block_size rows or flush_interval_ms has passed; each poll waits at most poll_timeout_ms.
    flush_interval_ms: int = Field(default=250, ge=10, le=60_000)
    poll_timeout_ms: int = Field(default=100, ge=10, le=60_000)
    max_block_size: int = Field(default=262_144, ge=1, le=10_000_000)
    # After a poll that found nothing, a consumer waits this long before it polls again.
    reschedule_ms: int = Field(default=100, ge=10, le=60_000)
    # A ClickHouse cluster (remote_servers) to render the migrations for: ON CLUSTER DDL, Replicated
    # tables, shard-local Kafka tables and Distributed tables for reads (docs/scaling.md).
    cluster: Identifier | None = None


class DebeziumConfig(_Strict):
    """Latency knobs of the Debezium MongoDB source connector, rendered into its config."""

    poll_interval_ms: int = Field(default=100, ge=1, le=60_000)  # wait for new change events per poll
    max_batch_size: int = Field(default=2048, ge=1, le=100_000)  # change events handed to Connect per poll


PiiAction = Literal["encrypt", "encrypt_deterministic", "blind_index", "drop", "keep"]
# A field path: dot-separated names; `name[]` steps into every element of an array of objects.
_PII_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[\])?(\.[A-Za-z_][A-Za-z0-9_]*(\[\])?)*$")


class PiiField(_Strict):
    """What the PII processor does with one field (docs/pii.md). `email: encrypt` is shorthand."""

    action: PiiAction
    blind_index: bool = False  # also write `<field>_bidx`: HMAC-SHA256 of the normalized value
    normalize: Literal["none", "email", "phone"] = "none"
    nullable: bool = False  # a null value passes as null instead of going to the DLQ

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"action": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _check(self) -> PiiField:
        if self.blind_index and self.action in ("drop", "blind_index"):
            raise ValueError(f"blind_index: true needs encrypt, encrypt_deterministic or keep, not {self.action}")
        return self


class PiiProcessorConfig(_Strict):
    """Settings of the PII processor (smt/) that every instance must share."""

    consumer_group: TopicName = "probablyfresh-pii"
    default_region: str = Field(default="US", pattern=r"^[A-Z]{2}$")  # for phone numbers without +country
    max_record_bytes: int = Field(default=524288, ge=1024, le=700000)  # larger records go to the DLQ
    # Latency knobs: a batch is what one consume call returns (batch_size records, or what came within
    # poll_timeout_ms), and each batch is one transaction (one commit round trip).
    poll_timeout_ms: int = Field(default=100, ge=1, le=60_000)
    batch_size: int = Field(default=5000, ge=1, le=1_000_000)


class ScaleConfig(_Strict):
    """Partitions and consumers (docs/scaling.md), checked together: a consumer beyond the
    partition count of its topics would idle, so PipelineConfig refuses it."""

    partitions: int = Field(default=1, ge=1, le=1000)  # every CDC topic, and its `_secure` copy
    dlq_partitions: int = Field(default=1, ge=1, le=1000)
    processor_instances: int = Field(default=1, ge=1, le=100)  # one consumer group
    # Per Kafka engine table and ClickHouse node (kafka_num_consumers; the server refuses more than
    # its cores). All nodes' tables share one consumer group per entity.
    clickhouse_consumers: int = Field(default=1, ge=1, le=64)
    clickhouse_nodes: int = Field(default=1, ge=1, le=1000)  # nodes that consume: shards x replicas

    @model_validator(mode="after")
    def _consumers_fit(self) -> ScaleConfig:
        if self.processor_instances > self.partitions:
            raise ValueError(f"processor_instances {self.processor_instances} > partitions {self.partitions}: "
                             "the extra instances would idle; add partitions first")
        total = self.clickhouse_consumers * self.clickhouse_nodes
        if total > self.partitions:
            raise ValueError(f"clickhouse_consumers x clickhouse_nodes = {total} > partitions {self.partitions}: "
                             "the extra consumers would idle; add partitions first")
        return self


_DERIVED = ("name", "cdc_topic", "secure_topic")


class Entity(_Strict):
    collection: Identifier
    business_key: Identifier
    # Derived by PipelineConfig (never read from the file, never dumped back to it).
    name: str = Field(default="", exclude=True)
    cdc_topic: str = Field(default="", exclude=True)
    secure_topic: str = Field(default="", exclude=True)
    # PII policy: field path -> action. None (absent) means "not reviewed": the processor refuses it.
    pii: dict[str, PiiField] | None = None

    @model_validator(mode="before")
    @classmethod
    def _refuse_derived(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in _DERIVED:
                if key in data:
                    raise ValueError(f"{key} is derived from the entity's key and the kafka section; remove it")
        return data

    @model_validator(mode="after")
    def _check_pii(self) -> Entity:
        paths = sorted(self.pii or {})
        for path in paths:
            if not _PII_PATH.match(path):
                raise ValueError(f"pii.{path}: not a field path (names joined by '.', 'items[].name' for arrays)")
            if path.endswith("[]"):
                raise ValueError(f"pii.{path}: name a field inside the array's objects, e.g. pii.{path}.email")
            head = path.split(".")[0].removesuffix("[]")
            if path in (self.business_key, "_id") or head.startswith("__"):
                raise ValueError(f"pii.{path}: business keys, _id and __ metadata pass through unchanged")
        for a, b in zip(paths, paths[1:], strict=False):  # noqa: RUF007
            if b.startswith(a + ".") or b.startswith(a + "[]."):
                raise ValueError(f"pii.{b}: nested inside pii.{a}; keep only one of them")
        return self


class PipelineConfig(_Strict):
    mongodb: MongoConfig
    kafka: KafkaConfig
    clickhouse: ClickHouseConfig
    entities: dict[str, Entity] = Field(min_length=1)
    pii_processor: PiiProcessorConfig = PiiProcessorConfig()
    debezium: DebeziumConfig = DebeziumConfig()
    scale: ScaleConfig = ScaleConfig()

    @model_validator(mode="after")
    def _derive_topics(self) -> PipelineConfig:
        if self.scale.clickhouse_nodes > 1 and self.clickhouse.cluster is None:
            raise ValueError("scale.clickhouse_nodes > 1 needs clickhouse.cluster (the nodes' cluster name)")
        derived = {}
        for name, entity in self.entities.items():
            _identifier(name)
            cdc = f"{self.kafka.topic_prefix}.{self.mongodb.database}.{entity.collection}"
            derived[name] = entity.model_copy(
                update={"name": name, "cdc_topic": cdc, "secure_topic": cdc + self.kafka.secure_suffix}
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

    def isolated(self, tag: str) -> PipelineConfig:
        """A copy in which every name another run could collide with carries `tag`: topics, the
        connector, ClickHouse databases and consumer groups. Tests and benchmarks use it so runs
        side by side on one stack never share state; `tag` must be letters and digits."""
        if not tag.isalnum():
            raise ConfigError(f"isolation tag {tag!r} must be letters and digits only")
        raw = self.model_dump(mode="json")
        k, ch = raw["kafka"], raw["clickhouse"]
        k.update(topic_prefix=f"{k['topic_prefix']}-{tag}", dlq_topic=f"{k['dlq_topic']}-{tag}",
                 connector_name=f"{k['connector_name']}-{tag}")
        ch.update(raw_database=f"{ch['raw_database']}_{tag}", mart_database=f"{ch['mart_database']}_{tag}",
                  consumer_group=f"{ch['consumer_group']}-{tag}")
        raw["pii_processor"]["consumer_group"] += f"-{tag}"
        return PipelineConfig.model_validate(raw)

    def to_yaml(self) -> str:
        """The config as pipeline.yaml text (derived names left out), e.g. for a subprocess."""
        return yaml.safe_dump(self.model_dump(mode="json", exclude_none=True), sort_keys=False)


def load_pipeline_config(path: Path) -> PipelineConfig:
    """Load and validate the pipeline config; any problem is one line naming file and key."""
    raw = read_yaml_mapping(path, missing_hint="set FRESH_PIPELINE_CONFIG to its path")
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{path}: {key}: {msg}") from None
