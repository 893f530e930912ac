"""The pipeline downstream of Debezium, with every real component in line:

CDC-shaped records (tests/cdc_records.py, the shape Debezium emits with our connector config, pinned
against Debezium itself by tests/integration/connectors/test_debezium_capture.py) -> the real Kafka broker -> the
PII processor (exactly once) -> `_secure` topics -> ClickHouse (embedded engine) Kafka tables -> RAW
-> MART. Proves the contract between the processor and the warehouse, and that no plaintext email
or phone number reaches it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from clickhouse.audit import audit
from fresh.kafka_connection import KafkaConnection
from fresh.pipeline import PipelineConfig
from fresh.wait import wait_until
from smt.envelope import decrypt
from smt.normalize import normalize_email
from smt.processor import ensure_topics
from tests.cdc_records import mixed_records

RECORDS = 3000


def _expected(cfg: PipelineConfig, records: list) -> tuple[dict[str, int], dict[str, int], dict[str, str]]:
    """Per entity: messages with a value (RAW rows), keys alive after their last event (MART FINAL),
    and one customer's original email by id."""
    raw_rows: dict[str, int] = defaultdict(int)
    alive: dict[str, dict[str, bool]] = defaultdict(dict)
    emails: dict[str, str] = {}
    for record in records:
        if record.value is None:
            continue
        entity = cfg.entity_for_topic(record.topic)
        doc = json.loads(record.value)
        raw_rows[entity.name] += 1
        key = doc.get(entity.business_key) or doc.get("_id") or json.loads(record.key)["id"]
        alive[entity.name][key] = str(doc.get("__deleted")).lower() != "true"
        if entity.name == "customers" and doc.get("email"):
            emails[key] = doc["email"]
    current = {name: sum(flags.values()) for name, flags in alive.items()}
    return dict(raw_rows), current, emails


def test_cdc_records_reach_mart_encrypted_exactly_once(
    pipeline: PipelineConfig, bootstrap: KafkaConnection, unique: str, secure_pipeline_running: Callable[..., Any]
) -> None:
    cfg = pipeline.isolated(f"e2e{unique}")
    admin = AdminClient(bootstrap.config())
    for fut in admin.create_topics([NewTopic(t, num_partitions=3, replication_factor=1)
                                    for t in cfg.cdc_topics]).values():
        fut.result(30)
    ensure_topics(cfg, bootstrap)

    records = list(mixed_records(cfg, RECORDS, seed=7))
    producer = Producer(bootstrap.config({"partitioner": "murmur2_random"}))
    for record in records:
        producer.produce(record.topic, record.value, record.key)
    assert producer.flush(30) == 0
    raw_expected, mart_expected, emails = _expected(cfg, records)

    with secure_pipeline_running(cfg, f"e2e-{unique}") as (keyring, backend):
        raw_db, mart_db = cfg.clickhouse.raw_database, cfg.clickhouse.mart_database

        def raw_complete() -> dict[str, int] | None:
            # every (key, version) there: each CDC record with a value has its own version
            got = {e.name: int(backend.query(f"SELECT uniqExact({e.business_key}, source_ts_ms) AS n "
                                             f"FROM {raw_db}.{e.name}")[0]["n"])
                   for e in cfg.entities.values()}
            return got if got == raw_expected else None

        wait_until(raw_complete, timeout_s=180, what=f"RAW rows {raw_expected} from the processor's _secure topics")
        # Exactly once end to end: every CDC record with a value is one RAW row, none twice, whoever
        # wrote the copy (the processor, a redelivery): per entity, rows = distinct (key, version).
        for e in cfg.entities.values():
            row = backend.query(f"SELECT count() AS rows, uniqExact({e.business_key}, source_ts_ms) AS versions "
                                f"FROM {raw_db}.{e.name}")[0]
            assert int(row["rows"]) == int(row["versions"]), f"{e.name}: {row} (duplicates in RAW)"

        def mart_current() -> dict[str, int] | None:  # MART is written just after RAW (its views)
            got = {e: int(backend.query(f"SELECT count() AS n FROM {mart_db}.{e} FINAL WHERE NOT is_deleted")[0]["n"])
                   for e in cfg.entities}
            return got if got == mart_expected else None

        wait_until(mart_current, timeout_s=30, what=f"MART current rows {mart_expected}")
        rejects = backend.query(f"SELECT entity, rule, count() AS n FROM {mart_db}.rejects GROUP BY entity, rule")
        assert rejects == []
        assert backend.query(f"SELECT count() AS n FROM {raw_db}.kafka_errors")[0]["n"] in (0, "0")

        # The warehouse holds ciphertext that decrypts to the normalized original, never plaintext.
        row = backend.query(f"SELECT customer_id, email FROM {raw_db}.customers WHERE email != '' "
                            f"ORDER BY customer_id LIMIT 1")[0]
        assert row["email"].startswith("pf2.")
        plain = decrypt(keyring.current().keys, row["email"], "customers", "email", row["customer_id"]).decode()
        assert plain == normalize_email(emails[row["customer_id"]])
        _, findings = audit(backend, cfg)
        assert findings == []
