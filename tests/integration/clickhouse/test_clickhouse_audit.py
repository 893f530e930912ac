"""`audit` proves the Kafka tables read only `_secure` topics and no plaintext email or phone is
stored; each test plants one violation and checks it is found (the package's shared pipeline
keeps them, so each test looks at its own check; the clean audit runs on databases of its own, so
it holds in any test order)."""

from __future__ import annotations

from clickhouse.audit import audit, check_plaintext
from clickhouse.backend import ChdbBackend, quote
from clickhouse.migrate import migrate
from clickhouse.render import render_migrations
from fresh.pipeline import PipelineConfig
from fresh.settings import Settings
from stack.kafka_security import engine_connection


def test_audit_is_clean_after_migrate(chdb_backend: ChdbBackend, unique_pipeline: PipelineConfig,
                                      settings: Settings) -> None:
    # Its own databases: the package's shared pipeline collects the other tests' planted findings.
    cfg = unique_pipeline
    migrate(chdb_backend, render_migrations(cfg, engine_connection(settings, cfg)), cfg.clickhouse.raw_database)
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
        "column raw_message: 1 value(s) look like a plaintext email",
        "column raw_message: 1 value(s) look like a plaintext phone",
    ]
    assert all(f.table == f"{raw}.kafka_errors" for f in findings)
    assert not any("example.com" in d or "555" in d for d in details)


def test_audit_reads_what_the_processor_guard_reads(chdb_backend: ChdbBackend, pipeline: PipelineConfig,
                                                    unique: str) -> None:
    """The processor's detectors over every string, array and map column, JSON escapes decoded;
    envelopes, blind indexes and ordinary text are not findings. Its own databases, so no other
    test's rows count."""
    from tests.secure_records import blind_index, fake_envelope

    cfg = pipeline.isolated(f"audit{unique}")
    db = cfg.clickhouse.raw_database
    chdb_backend.execute(f"CREATE DATABASE IF NOT EXISTS {db}")
    chdb_backend.execute(
        f"CREATE TABLE {db}.t (id UInt32, s String, n Nullable(String), a Array(String), "
        "aa Array(Array(String)), m Map(String, String)) ENGINE = MergeTree ORDER BY id"
    )
    rows = [
        (1, "anna\\u0040example.com", None, [], [], {}),  # a literal JSON escape
        (2, "", "анна@пример.рф", [], [], {}),  # any script
        (3, "", None, ["ok", "bob＠example.org"], [], {}),  # full-width at, in an array
        (4, "", None, [], [["x"], ["звоните 8 (912) 123-45-67"]], {}),  # phone in free text, nested array
        (5, "", None, [], [], {"zoe@example.com": "1"}),  # a map key
        (6, '{"contacts": {"+79121234567": true}}', None, [], [], {}),  # a JSON object key
        # not findings: what the processor writes, and ordinary text and ids
        (7, fake_envelope("anna@example.com"), blind_index("anna@example.com"), ["Молоко 3,2%", "T00000001"],
         [["S001"]], {"price": "1234567.89"}),
    ]
    values = ", ".join(
        f"({i}, {quote(s)}, {'NULL' if n is None else quote(n)}, [{', '.join(quote(x) for x in a)}], "
        f"[{', '.join('[' + ', '.join(quote(y) for y in x) + ']' for x in aa)}], "
        f"map({', '.join(quote(k) + ', ' + quote(v) for k, v in m.items())}))"
        for i, s, n, a, aa, m in rows
    )
    chdb_backend.execute(f"INSERT INTO {db}.t VALUES {values}")
    details = sorted(f.detail for f in check_plaintext(chdb_backend, cfg))
    assert details == [
        "column a: 1 value(s) look like a plaintext email",
        "column aa: 1 value(s) look like a plaintext phone",
        "column m: 1 value(s) look like a plaintext email",
        "column n: 1 value(s) look like a plaintext email",
        "column s: 1 value(s) look like a plaintext email",
        "column s: 1 value(s) look like a plaintext phone",
    ]


def test_a_sampled_audit_reads_at_most_its_sample(chdb_backend: ChdbBackend, pipeline: PipelineConfig,
                                                  unique: str) -> None:
    """`freshctl up`'s summary audits a random sample of each table (`sample_rows`): a table that
    fits in the sample is read whole, and no more than the sample is read of a larger one."""
    cfg = pipeline.isolated(f"sample{unique}")
    db = cfg.clickhouse.raw_database
    chdb_backend.execute(f"CREATE DATABASE IF NOT EXISTS {db}")
    chdb_backend.execute(f"CREATE TABLE {db}.t (id UInt32, s String) ENGINE = MergeTree ORDER BY id")
    chdb_backend.execute(f"INSERT INTO {db}.t SELECT number, concat('ann', toString(number), '@example.com') "
                         "FROM numbers(40)")

    def emails(sample_rows: int | None) -> str:
        return ";".join(f.detail for f in check_plaintext(chdb_backend, cfg, sample_rows) if f.table == f"{db}.t")

    assert emails(None) == emails(40) == "column s: 40 value(s) look like a plaintext email"
    assert emails(7) == "column s: 7 value(s) look like a plaintext email"
