"""Render the ordered migration files (`migrations/NNN_name.sql.j2`) from the pipeline config.

Names (databases, tables, topics, consumer groups) come from the `PipelineConfig`; the Kafka
engine's connection (brokers, SASL user) from `settings.kafka("clickhouse")`. A file whose first
lines hold `-- requires: server` runs on a ClickHouse server only (users, roles and grants; chdb has no access control).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from clickhouse import contract
from clickhouse.fields import fields_for, payload_tuple_type
from clickhouse.rules import ITEMS_PARSED, rules_array_sql
from clickhouse.statements import split_statements
from fresh.errors import ConfigError
from fresh.kafka_connection import KafkaConnection
from fresh.pipeline import PipelineConfig

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_FILE = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql\.j2$")
_REQUIRES_SERVER = "-- requires: server"


@dataclass(frozen=True)
class KafkaTuning:
    """Kafka engine settings (measured in docs/benchmarks.md). A flush every 1000 ms keeps
    steady-state freshness at about 1.6 s (under the 2 s target) and doubles the block size of a
    500 ms flush when a backlog is read; `max_block_size` caps a block."""

    flush_interval_ms: int = 1000
    max_block_size: int = 262144
    poll_timeout_ms: int = 200
    num_consumers: int = 1
    # Each consumer reads, parses and writes its blocks in its own thread (and flushes on its own):
    # with several partitions and consumers, the RAW -> MART chain runs on several cores.
    thread_per_consumer: bool = True


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
    missing = {"stores", "products", "customers", "purchases"} - {e["name"] for e in entities}
    if missing:
        raise ConfigError(f"pipeline config lacks the entities the MART needs: {', '.join(sorted(missing))}")
    context = {
        "raw_db": cfg.clickhouse.raw_database,
        "mart_db": cfg.clickhouse.mart_database,
        # the Kafka engine's connection (settings.kafka("clickhouse")); a plain broker list for tables never consumed
        "kafka_engine": kafka.clickhouse_engine_settings() if isinstance(kafka, KafkaConnection)
        else {"kafka_broker_list": kafka},
        "entities": entities,
        "ent": {e["name"]: e for e in entities},
        "items_parsed": ITEMS_PARSED,
        "kafka": tuning or KafkaTuning(),
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
    return migrations
