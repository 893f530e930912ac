"""The whole pipeline with nothing stood in for: the generator seeds MongoDB (the local stack's
wire-protocol server), the rendered Debezium connector snapshots and streams it, the PII processor
encrypts it exactly once, ClickHouse's Kafka tables land it in RAW and MART. MART must then agree
with MongoDB, key for key, after inserts, updates and deletes, and hold no plaintext email or phone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clickhouse.audit import audit
from connectors.apply import apply, wait_for_state
from connectors.connect_api import ConnectApi
from connectors.render import render
from fresh.clients import kafka_admin, mongo_client
from fresh.pipeline import PipelineConfig
from fresh.settings import Settings
from fresh.wait import wait_until
from generator.domain import Domain, Plan
from generator.seed import MongoSink, seed
from smt.normalize import normalize_email
from smt.processor import ensure_topics


@pytest.fixture
def e2e(pipeline: PipelineConfig, settings: Settings, unique: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    raw = pipeline.isolated(f"dbz{unique}").model_dump(mode="json", exclude_none=True)
    raw["mongodb"]["database"] = f"e2e_{unique}"
    cfg = PipelineConfig.model_validate(raw)
    # Own stack home: the connector's secret file goes to tmp, not to the shared stack's folder.
    local = Settings(stack_home=tmp_path / "stack", mongo_uri=settings.mongo_uri,
                     kafka_bootstrap=settings.kafka_bootstrap, connect_url=settings.connect_url)
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
    admin = kafka_admin(settings)
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
    admin = kafka_admin(settings)
    wait_until(lambda: set(cfg.cdc_topics) <= set(admin.list_topics(timeout=5).topics), timeout_s=120,
               what=f"Debezium to create the CDC topics {cfg.cdc_topics}")
    ensure_topics(cfg, settings.kafka_bootstrap)

    with secure_pipeline_running(cfg, f"e2e-{cfg.kafka.topic_prefix}") as (keyring, backend):
        mart = cfg.clickhouse.mart_database

        def mart_matches_mongo() -> bool:
            for entity in cfg.entities.values():
                ids = sorted(d["_id"] for d in db[entity.collection].find({}, {"_id": 1}))
                rows = backend.query(f"SELECT {entity.business_key} AS id FROM {mart}.{entity.name} FINAL "
                                     f"WHERE NOT is_deleted ORDER BY id")
                got = [r["id"] for r in rows]
                if got != ids:  # raised, not returned: the timeout message then names the difference
                    raise AssertionError(f"{entity.name}: MART lacks {sorted(set(ids) - set(got))[:5]}, "
                                         f"has extra {sorted(set(got) - set(ids))[:5]}")
            return True

        wait_until(mart_matches_mongo, timeout_s=180, what="MART to hold every seeded document (snapshot)")

        # Streamed changes: an update, an insert and a delete, each must reach MART.
        customers, purchases = db[cfg.entity("customers").collection], db[cfg.entity("purchases").collection]
        customer = customers.find_one(sort=[("_id", 1)])
        customers.update_one({"_id": customer["_id"]}, {"$set": {"loyalty_status": "platinum"}})
        gone = purchases.find_one(sort=[("_id", -1)])["_id"]
        purchases.delete_one({"_id": gone})
        new = dict(purchases.find_one(sort=[("_id", 1)]), _id="T99999999", purchase_id="T99999999")
        purchases.insert_one(new)
        wait_until(mart_matches_mongo, timeout_s=120, what="MART to follow the streamed insert and delete")

        def loyalty() -> str:
            rows = backend.query(f"SELECT loyalty_status FROM {mart}.customers FINAL "
                                 f"WHERE customer_id = '{customer['_id']}'")
            return str(rows[0]["loyalty_status"]) if rows else ""

        wait_until(lambda: loyalty() == "platinum", timeout_s=60, what="the streamed update in MART")

        # MART holds the blind index of the normalized email, never the email.
        row = backend.query(f"SELECT email_bidx FROM {mart}.customers FINAL WHERE customer_id = '{customer['_id']}'")
        assert row[0]["email_bidx"] == keyring.current().blind_index.index(normalize_email(customer["email"]), "email")
        _, findings = audit(backend, cfg)
        assert findings == []
