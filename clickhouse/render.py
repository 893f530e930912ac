"""Render the ordered migration files (`migrations/NNN_name.sql.j2`) from the pipeline config.

Names (databases, tables, topics, consumer groups) come from the `PipelineConfig`; the Kafka
engine's connection (brokers, SASL user) from `settings.kafka("clickhouse")`. A file whose first
lines hold `-- requires: server` runs on a ClickHouse server only (users, roles and grants; chdb
has no access control). With `clickhouse.cluster` set, the statements are rewritten for a cluster
(clickhouse/cluster.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from clickhouse import contract
from clickhouse.cluster import cluster_migrations
from clickhouse.fields import fields_for, payload_tuple_type
from clickhouse.rules import ITEMS_PARSED, rules_array_sql
from clickhouse.statements import split_statements
from fresh.errors import ConfigError
from fresh.kafka_connection import KafkaConnection
from fresh.pipeline import ClickHouseConfig, PipelineConfig

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_FILE = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql\.j2$")
_REQUIRES_SERVER = "-- requires: server"
_KNOBS = ClickHouseConfig.model_fields  # the latency knobs' defaults live in the pipeline config


@dataclass(frozen=True)
class KafkaTuning:
    """Kafka engine settings (measured in docs/benchmarks.md). The latency knobs (flush interval,
    poll timeout, block size) come from `clickhouse:` in pipeline.yaml (`from_config`): a block is
    written to RAW and MART when it holds `max_block_size` rows or `flush_interval_ms` has passed."""

    flush_interval_ms: int = _KNOBS["flush_interval_ms"].default
    max_block_size: int = _KNOBS["max_block_size"].default
    poll_timeout_ms: int = _KNOBS["poll_timeout_ms"].default
    reschedule_ms: int = _KNOBS["reschedule_ms"].default
    # kafka_num_consumers; None: the pipeline config's scale.clickhouse_consumers (docs/scaling.md).
    num_consumers: int | None = None
    # Each consumer reads, parses and writes its blocks in its own thread (and flushes on its own):
    # with several partitions and consumers, the RAW -> MART chain runs on several cores.
    thread_per_consumer: bool = True

    @classmethod
    def from_config(cls, cfg: PipelineConfig) -> KafkaTuning:
        ch = cfg.clickhouse
        return cls(flush_interval_ms=ch.flush_interval_ms, max_block_size=ch.max_block_size,
                   poll_timeout_ms=ch.poll_timeout_ms, reschedule_ms=ch.reschedule_ms,
                   num_consumers=cfg.scale.clickhouse_consumers)


def engine_kafka_settings(kafka: KafkaConnection | str) -> dict[str, str]:
    """The Kafka engine's connection settings (escaped for a SQL literal): those of the connection
    (`settings.kafka("clickhouse")`: brokers, TLS, SASL user and password), or a plain broker list."""
    return kafka.clickhouse_engine_settings() if isinstance(kafka, KafkaConnection) else {"kafka_broker_list": kafka}


def queue_settings(cfg: PipelineConfig, entity: str, kafka: KafkaConnection | str,
                   tuning: KafkaTuning) -> dict[str, str]:
    """The Kafka engine settings of `<raw>.<entity>_queue`, as SQL literals (what `engine_full`
    shows, except the password: ClickHouse shows it as '[HIDDEN]')."""
    e = cfg.entity(entity)
    tuning = _with_consumers(tuning, cfg)
    return {
        **{name: f"'{value}'" for name, value in engine_kafka_settings(kafka).items()},
        "kafka_topic_list": f"'{e.secure_topic}'",
        "kafka_group_name": f"'{cfg.clickhouse.consumer_group}-{e.name}'",
        "kafka_format": "'JSONAsString'",
        "kafka_handle_error_mode": "'stream'",
        "kafka_num_consumers": str(tuning.num_consumers),
        "kafka_thread_per_consumer": str(int(tuning.thread_per_consumer)),
        "kafka_max_block_size": str(tuning.max_block_size),
        "kafka_flush_interval_ms": str(tuning.flush_interval_ms),
        "kafka_poll_timeout_ms": str(tuning.poll_timeout_ms),
        "kafka_consumer_reschedule_ms": str(tuning.reschedule_ms),
    }


def queue_ddl(cfg: PipelineConfig, entity: str, kafka: KafkaConnection | str, tuning: KafkaTuning) -> str:
    """CREATE TABLE of the Kafka engine table of `entity` (migration 009 and `retune`)."""
    settings = ",\n".join(f"    {k} = {v}" for k, v in queue_settings(cfg, entity, kafka, tuning).items())
    return (f"CREATE TABLE IF NOT EXISTS {cfg.clickhouse.raw_database}.{entity}_queue (\n    payload String\n"
            f") ENGINE = Kafka\nSETTINGS\n{settings}")


@dataclass(frozen=True)
class Migration:
    name: str  # file name without `.sql.j2`, e.g. "002_raw_tables"
    path: Path
    checksum: str  # sha256 of the template file: editing an applied file is refused
    sql: str
    server_only: bool
    statements: list[str] = field(default_factory=list)


def reader_role(cfg: PipelineConfig) -> str:
    return f"{cfg.clickhouse.mart_database}_reader"


def dashboard_user(cfg: PipelineConfig) -> str:
    return f"{cfg.clickhouse.mart_database}_dashboard"


def entity_context(cfg: PipelineConfig) -> list[dict[str, Any]]:
    out = []
    for e in cfg.entities.values():
        fields = fields_for(e.name, e.business_key)
        meta = ["message_key", "doc_id", "op", "source_ts_ms", "deleted", "broken_rules", "_topic", "_partition",
                "_offset", "_timestamp", "ingested_at"]
        out.append({
            "name": e.name,
            "business_key": e.business_key,
            "secure_topic": e.secure_topic,
            "consumer_group": f"{cfg.clickhouse.consumer_group}-{e.name}",
            "fields": fields,
            "payload_type": payload_tuple_type(fields),
            "rules_sql": rules_array_sql(e.name, e.business_key),
            "non_pii_columns": [f.column for f in fields if not f.pii] + meta,
            "contract_sql": contract.contract_rules_sql(e.name, e.business_key),
            "known_keys": contract.known_keys(e.name, e.business_key),
        })
    return out


def _with_consumers(tuning: KafkaTuning, cfg: PipelineConfig) -> KafkaTuning:
    if tuning.num_consumers is not None:
        return tuning
    return dataclasses.replace(tuning, num_consumers=cfg.scale.clickhouse_consumers)


def render_migrations(
    cfg: PipelineConfig,
    kafka: KafkaConnection | str,
    *,
    tuning: KafkaTuning | None = None,
    dashboard_password_sha256: str = "",
    directory: Path = MIGRATIONS_DIR,
) -> list[Migration]:
    """Every migration file, in order, rendered (StrictUndefined: a missing value fails)."""
    entities = entity_context(cfg)
    knobs = _with_consumers(tuning or KafkaTuning.from_config(cfg), cfg)
    missing = {"stores", "products", "customers", "purchases"} - {e["name"] for e in entities}
    if missing:
        raise ConfigError(f"pipeline config lacks the entities the MART needs: {', '.join(sorted(missing))}")
    context = {
        "raw_db": cfg.clickhouse.raw_database,
        "mart_db": cfg.clickhouse.mart_database,
        # the Kafka engine's connection (settings.kafka("clickhouse")); a plain broker list for tables never consumed
        "kafka_engine": engine_kafka_settings(kafka),
        "entities": entities,
        "ent": {e["name"]: e for e in entities},
        "items_parsed": ITEMS_PARSED,
        "kafka": knobs,
        "kafka_queue_ddl": lambda e: queue_ddl(cfg, e["name"], kafka, knobs),
        "kv_sql": contract.kv_sql(),
        "exact_decimal": contract.exact_decimal,
        "decimal_text": contract.decimal_text,
        "decimal_texts": contract.decimal_texts,
        "reader_role": reader_role(cfg),
        "dashboard_user": dashboard_user(cfg),
        "dashboard_password_sha256": dashboard_password_sha256,
    }
    env = jinja2.Environment(  # noqa: S701 -- renders SQL, not HTML
        loader=jinja2.FileSystemLoader(directory), undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
    )
    migrations = []
    seen: set[str] = set()
    for path in sorted(directory.glob("*.sql.j2")):
        m = _FILE.match(path.name)
        if not m:
            raise ConfigError(f"{path}: migration files are named NNN_lowercase_name.sql.j2")
        if m.group(1) in seen:
            raise ConfigError(f"{path}: two migrations share the number {m.group(1)}")
        seen.add(m.group(1))
        source = path.read_text(encoding="utf-8")
        try:
            sql = env.get_template(path.name).render(**context)
        except jinja2.TemplateError as exc:
            raise ConfigError(f"{path}: cannot render: {exc}") from None
        migrations.append(Migration(
            name=path.name.removesuffix(".sql.j2"),
            path=path,
            checksum=hashlib.sha256(source.encode("utf-8")).hexdigest(),
            sql=sql,
            server_only=_REQUIRES_SERVER in source.splitlines()[:3],
            statements=split_statements(sql),
        ))
    if cfg.clickhouse.cluster:
        return cluster_migrations(migrations, cfg.clickhouse.cluster)
    return migrations
