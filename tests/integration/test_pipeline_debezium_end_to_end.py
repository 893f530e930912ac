"""The whole pipeline with nothing stood in for: the generator seeds MongoDB (the local stack's
wire-protocol server), the rendered Debezium connector snapshots and streams it, the PII processor
encrypts it exactly once, ClickHouse's Kafka tables land it in RAW and MART. MART must then equal
MongoDB field for field (tests/integration/mart_vs_mongo.py: every MART column, and the newest RAW
payload decrypted with the keyring, PII included), after the snapshot and after a change stream
of inserts, updates and deletes, and hold no plaintext email or phone. The MongoDB server is the
local stack's wire-protocol emulator with our change-stream layer, not mongod.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer
from mart_vs_mongo import differences, wait_equal

from clickhouse.audit import audit
from connectors.apply import apply, wait_for_state
from connectors.connect_api import ConnectApi
from connectors.render import render
from fresh.clients import kafka_admin, mongo_client
from fresh.pipeline import PipelineConfig
from fresh.settings import Settings
from fresh.wait import wait_until
from generator.changes import ChangeRunner
from generator.domain import Domain, Plan
from generator.seed import MongoSink, seed
from smt.processor import ensure_topics

CHANGES = 40  # four of each kind of change in CHANGE_CYCLE's proportions
SNAPSHOT_EXTRA = 19000  # purchases added for the snapshot race test


@pytest.fixture
def e2e(pipeline: PipelineConfig, settings: Settings, unique: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    raw = pipeline.isolated(f"dbz{unique}").model_dump(mode="json", exclude_none=True)
    raw["mongodb"]["database"] = f"e2e_{unique}"
    cfg = PipelineConfig.model_validate(raw)
    # Own stack home: the connector's secret file goes to tmp, not to the shared stack's folder.
    local = Settings(stack_home=tmp_path / "stack", mongo_uri=settings.mongo_uri,
                     kafka_bootstrap=settings.kafka_bootstrap, connect_url=settings.connect_url,
                     kafka_ca_file=settings.kafka_ca_file, kafka_users_dir=settings.kafka_users_dir)
    api = ConnectApi.from_settings(settings)
    mongo = mongo_client(settings)
    state: dict[str, Any] = {"cfg": cfg, "local": local, "api": api, "db": mongo[cfg.mongodb.database]}
    yield state
    name = cfg.kafka.connector_name
    if name in api.list_connectors():
        api.stop(name)
        wait_for_state(api, name, "STOPPED", timeout_s=60)
        api.delete(name)
    mongo.drop_database(cfg.mongodb.database)
    mongo.close()
    admin = kafka_admin(settings.kafka("admin"))
    prefix = cfg.kafka.topic_prefix
    topics = [t for t in admin.list_topics(timeout=10).topics
              if t.startswith(prefix + ".") or t.endswith("." + prefix) or t == cfg.kafka.dlq_topic]
    if topics:
        for future in admin.delete_topics(topics, operation_timeout=30).values():
            future.result()


def test_mongo_to_mart_through_debezium_and_the_processor(
    e2e: dict[str, Any], settings: Settings, secure_pipeline_running: Callable[..., Any]
) -> None:
    cfg: PipelineConfig = e2e["cfg"]
    db = e2e["db"]
    sink = MongoSink(db, cfg)
    sink.ensure_indexes()
    seed(Domain(Plan(seed=42)), [sink], batch_size=500)

    rendered = render(cfg, e2e["local"], "local", only=["mongodb_source"])
    apply(e2e["api"], rendered, e2e["local"], timeout_s=60)
    admin = kafka_admin(settings.kafka("admin"))
    wait_until(lambda: set(cfg.cdc_topics) <= set(admin.list_topics(timeout=5).topics), timeout_s=120,
               what=f"Debezium to create the CDC topics {cfg.cdc_topics}")
    ensure_topics(cfg, settings.kafka("admin"))

    with secure_pipeline_running(cfg, f"e2e-{cfg.kafka.topic_prefix}") as (keyring_source, backend):
        keyring = keyring_source.current()
        mart = cfg.clickhouse.mart_database

        find = functools.partial(differences, cfg, backend, db, keyring)

        wait_equal(find, 240, "snapshot")

        # Streamed changes: the generator's change stream (purchases inserted, prices and loyalty
        # updated, statuses changed, purchases deleted), plus one update checked on its own.
        customers = db[cfg.entity("customers").collection]
        customer = customers.find_one({"loyalty_status": {"$ne": "platinum"}}, sort=[("_id", 1)])
        assert customer is not None

        def loyalty() -> str:
            rows = backend.query(f"SELECT loyalty_status FROM {mart}.customers FINAL "
                                 f"WHERE customer_id = '{customer['_id']}'")
            return str(rows[0]["loyalty_status"]) if rows else ""

        assert loyalty() == customer["loyalty_status"] != "platinum"  # so the update below must arrive
        customers.update_one({"_id": customer["_id"]}, {"$set": {"loyalty_status": "platinum"}})
        report = ChangeRunner(db, cfg, Domain(Plan(seed=42))).run(CHANGES, rate=0)
        assert sum(report.counts.values()) == CHANGES
        wait_equal(find, 180, f"after {CHANGES} changes")
        assert loyalty() == "platinum"
        _, findings = audit(backend, cfg)
        assert findings == []


def test_changes_during_the_snapshot_reach_mart(
    e2e: dict[str, Any], settings: Settings, secure_pipeline_running: Callable[..., Any]
) -> None:
    """Purchases deleted and updated while Debezium's initial snapshot runs: the snapshot's reads
    carry the emit time as ts_ms, later than the changes' wallTime, and precede them in the
    partition; MART must end with MongoDB's state (it kept the deleted ones while MART's version
    was source.ts_ms; migration 010)."""
    cfg: PipelineConfig = e2e["cfg"]
    db = e2e["db"]
    sink = MongoSink(db, cfg)
    sink.ensure_indexes()
    seed(Domain(Plan(seed=42)), [sink], batch_size=500)
    purchases = db[cfg.entity("purchases").collection]
    # More purchases (copies under new ids, read last), so the snapshot is still running when
    # the changes below are made (measured: with 20000 purchases, every change was such a race).
    seeded = list(purchases.find({}))
    purchases.insert_many([{**seeded[i % len(seeded)], "_id": f"T9{i:07d}", "purchase_id": f"T9{i:07d}"}
                           for i in range(SNAPSHOT_EXTRA)])
    last = [d["_id"] for d in purchases.find({}, {"_id": 1}).sort("_id", -1).limit(6)]

    apply(e2e["api"], render(cfg, e2e["local"], "local", only=["mongodb_source"]), e2e["local"], timeout_s=60)
    admin = kafka_admin(settings.kafka("admin"))
    topic = cfg.entity("purchases").cdc_topic
    wait_until(lambda: topic in admin.list_topics(timeout=5).topics, timeout_s=120, what=f"Debezium to create {topic}")
    consumer = Consumer(settings.kafka("admin").config({"group.id": f"e2e-{uuid.uuid4().hex}",
                                                        "auto.offset.reset": "earliest", "enable.auto.commit": False}))
    consumer.subscribe([topic])
    try:
        def first_read() -> bool:
            return any(m.error() is None and m.value() and json.loads(m.value()).get("__op") == "r"
                       for m in consumer.consume(num_messages=100, timeout=0.5))

        wait_until(first_read, timeout_s=120, what="the snapshot's first purchase read")
    finally:
        consumer.close()
    # While the snapshot runs: the purchases it reads last are deleted or change status.
    purchases.delete_many({"_id": {"$in": last[:3]}})
    for _id in last[3:]:
        purchases.update_one({"_id": _id}, {"$set": {"status": "returned", "updated_at": datetime.now(UTC)}})
    wait_until(lambda: set(cfg.cdc_topics) <= set(admin.list_topics(timeout=5).topics), timeout_s=120,
               what=f"Debezium to create the CDC topics {cfg.cdc_topics}")
    ensure_topics(cfg, settings.kafka("admin"))

    with secure_pipeline_running(cfg, f"e2e-{cfg.kafka.topic_prefix}") as (keyring_source, backend):
        keyring = keyring_source.current()

        find = functools.partial(differences, cfg, backend, db, keyring)

        wait_equal(find, 300, "changes during the snapshot")
        # The race this test is about happened: a read with a later ts_ms than the change after it.
        raw = cfg.clickhouse.raw_database
        ids = ", ".join(f"'{i}'" for i in last)
        raced = backend.query(
            f"SELECT count() AS n FROM {raw}.purchases AS r, {raw}.purchases AS c "
            f"WHERE r.doc_id = c.doc_id AND r.doc_id IN ({ids}) AND r.op = 'r' AND c.op != 'r' "
            "AND r._offset < c._offset AND r.source_ts_ms > c.source_ts_ms")[0]["n"]
        assert raced > 0, "every read preceded its change in ts_ms: the snapshot ended before the changes"
