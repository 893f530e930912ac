"""`audit` proves the Kafka tables read only `_secure` topics and no plaintext email or phone is
stored; each test plants one violation and checks it is found (the package's shared pipeline
keeps them, so each test looks at its own check; the clean audit runs on databases of its own, so
it holds in any test order)."""

from __future__ import annotations

from clickhouse.audit import audit
from clickhouse.backend import ChdbBackend
from clickhouse.migrate import migrate
from clickhouse.render import render_migrations
from fresh.pipeline import PipelineConfig
from fresh.settings import Settings


def test_audit_is_clean_after_migrate(chdb_backend: ChdbBackend, unique_pipeline: PipelineConfig,
                                      settings: Settings) -> None:
    # Its own databases: the package's shared pipeline collects the other tests' planted findings.
    cfg = unique_pipeline
    migrate(chdb_backend, render_migrations(cfg, settings.kafka_bootstrap), cfg.clickhouse.raw_database)
    tables, findings = audit(chdb_backend, cfg)
    assert sorted(t["topics"] for t in tables) == sorted(cfg.secure_topics)
    assert findings == []


def test_audit_fails_when_a_table_reads_a_non_secure_topic(
    chdb_backend: ChdbBackend, migrated_config: PipelineConfig, settings: Settings
) -> None:
    cfg = migrated_config
    cdc_topic = cfg.entity("customers").cdc_topic
    # No materialized view reads this table, so it never consumes the (plaintext) topic.
    chdb_backend.execute(
        f"CREATE TABLE {cfg.clickhouse.raw_database}.customers_plain_queue (payload String) ENGINE = Kafka "
        f"SETTINGS kafka_broker_list = '{settings.kafka_bootstrap}', kafka_topic_list = '{cdc_topic}', "
        f"kafka_group_name = '{cfg.clickhouse.consumer_group}-plain', kafka_format = 'JSONAsString'"
    )
    _tables, findings = audit(chdb_backend, cfg)
    findings = [f for f in findings if f.check == "secure_topics"]
    assert [(f.check, f.table) for f in findings] == [
        ("secure_topics", f"{cfg.clickhouse.raw_database}.customers_plain_queue")
    ]
    assert cdc_topic in findings[0].detail


def test_audit_finds_plaintext_email_and_phone_without_echoing_them(
    chdb_backend: ChdbBackend, migrated_config: PipelineConfig
) -> None:
    raw = migrated_config.clickhouse.raw_database
    chdb_backend.execute(
        f"INSERT INTO {raw}.kafka_errors (entity, error, raw_message) VALUES "
        "('customers', 'test', '{\"email\": \"ann.lee@example.com\", \"phone\": \"+7 (912) 555-12-34\"}'), "
        "('customers', 'test', '{\"birth_date\": \"1990-01-02\", \"__source_ts_ms\": 1763000000000}')"
    )
    _tables, findings = audit(chdb_backend, migrated_config)
    findings = [f for f in findings if f.check == "plaintext_pii"]
    details = sorted(f.detail for f in findings)
    assert details == [
        "column raw_message: 1 row(s) look like a plaintext email",
        "column raw_message: 1 row(s) look like a plaintext phone",
    ]
    assert all(f.table == f"{raw}.kafka_errors" for f in findings)
    assert not any("example.com" in d or "555" in d for d in details)
