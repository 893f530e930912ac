"""Debezium against the local Mongo server, end to end: the rendered connector config snapshots a
seeded collection, then streams an insert, an update and a delete into the CDC topic in the shape
of the CDC record contract (fresh/cdc_record.py), byte for byte, and equal to the capture
committed in smt/fixtures/debezium_capture.json (the unit tests hold the contract to it; with
FRESH_RECAPTURE=1 this test rewrites that file from what Debezium wrote). The Mongo server is
mongo-java-server, an in-memory emulator of the wire protocol with our change-stream layer, not
mongod: this proves what Debezium 3.5.0.Final emits for what that emulator serves, not how
Debezium behaves against a real replica set (oplog, resume tokens after a failover, pre-images).
Needs the extended launcher (stack/java/FreshMongoServer.java: `hello`, `operationTime`,
database/cluster change streams); a mongo service started before it must be restarted."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from bson import json_util
from confluent_kafka import Consumer

from connectors.apply import apply, wait_for_state
from connectors.connect_api import ConnectApi
from connectors.render import render
from fresh import cdc_record
from fresh.clients import kafka_admin, mongo_client
from fresh.kafka_connection import KafkaConnection
from fresh.pipeline import PipelineConfig
from fresh.settings import REPO_ROOT, Settings
from fresh.wait import wait_until

FIXTURE = REPO_ROOT / "smt" / "fixtures" / "extract_new_document_state.json"
CAPTURE = REPO_ROOT / "smt" / "fixtures" / "debezium_capture.json"
META = {"__op", "__source_ts_ms", "__deleted"}


@pytest.fixture
def capture(pipeline: PipelineConfig, settings: Settings, prefix: str, unique: str,
            tmp_path: Path, api: ConnectApi) -> Iterator[tuple[PipelineConfig, Settings]]:
    """This run's pipeline (own database, topics, connector) and settings whose stack home is in
    tmp, so the shared local secret file is never overwritten. Drops the database and topics after."""
    raw = pipeline.isolated(unique).model_dump(mode="json", exclude_none=True)
    raw["mongodb"]["database"] = f"fresh_it_{unique}"
    raw["kafka"]["connector_name"] = f"{prefix}src"
    mine = PipelineConfig.model_validate(raw)
    local = Settings(stack_home=tmp_path, mongo_uri=settings.mongo_uri, kafka_bootstrap=settings.kafka_bootstrap,
                     connect_url=settings.connect_url, kafka_ca_file=settings.kafka_ca_file,
                     kafka_users_dir=settings.kafka_users_dir)
    yield mine, local
    # Stop first (its task ends, so no late heartbeat re-creates a topic), then delete.
    name = mine.kafka.connector_name
    if name in api.list_connectors():
        api.stop(name)
        wait_for_state(api, name, "STOPPED", timeout_s=60)
        api.delete(name)
    wait_until(lambda: name not in api.list_connectors(), timeout_s=30, what=f"connector {name} to go")
    with mongo_client(settings) as mongo:
        mongo.drop_database(mine.mongodb.database)
    prefix_ = mine.kafka.topic_prefix
    admin = kafka_admin(settings.kafka("admin"))
    topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix_ + ".")
              or t == f"__debezium-heartbeat.{prefix_}"]
    if topics:
        for future in admin.delete_topics(topics, operation_timeout=30).values():
            future.result()


def _subscribe(bootstrap: KafkaConnection, topic: str) -> Consumer:
    consumer = Consumer(bootstrap.config({"group.id": f"fresh-it-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False}))
    consumer.subscribe([topic])
    return consumer


def _drain(consumer: Consumer, into: list[tuple[Any, Any]], raw: list[tuple[bytes, bytes | None]]) -> None:
    for message in consumer.consume(num_messages=100, timeout=0.5):
        if message.error() is None:
            value = message.value()
            into.append((json.loads(message.key()), None if value is None else json.loads(value)))
            raw.append((message.key(), value))  # type: ignore[arg-type]


def _without_ts(value: bytes | None) -> bytes | None:
    return None if value is None else re.sub(rb'"__source_ts_ms":[0-9]+', b'"__source_ts_ms":0', value)


def _check_capture(captured: list[dict[str, Any]]) -> None:
    """The records Debezium wrote now equal the committed capture (timestamps aside); with
    FRESH_RECAPTURE=1, write them as the new capture instead."""
    if os.environ.get("FRESH_RECAPTURE") == "1":
        about = ("Records Debezium 3.5.0.Final wrote to a CDC topic with our rendered connector config, captured from "
                 "the local stack by tests/integration/connectors/test_debezium_capture.py (FRESH_RECAPTURE=1 "
                 "rewrites this file; every run checks it still matches). `key` and `value` are the record's bytes "
                 "as text, exactly; `document` is what the test wrote to MongoDB (dates in extended JSON), `op` "
                 "and `ts_ms` the record's. tests/unit/smt/test_smt_cdc_records.py holds fresh/cdc_record.py "
                 "to these bytes.")
        CAPTURE.write_text(json.dumps({"about": about, "records": captured}, ensure_ascii=False, indent=2) + "\n",
                           encoding="utf-8")
        return
    committed = json.loads(CAPTURE.read_text(encoding="utf-8"))["records"]
    assert [(c["name"], c["key"]) for c in captured] == [(c["name"], c["key"]) for c in committed]
    for now, then in zip(captured, committed, strict=True):
        now_value = None if now["value"] is None else now["value"].encode()
        then_value = None if then["value"] is None else then["value"].encode()
        assert _without_ts(now_value) == _without_ts(then_value), now["name"]


def _fixture(name: str) -> dict[str, Any]:
    records = json.loads(FIXTURE.read_text())["records"]
    return next(r for r in records if r["name"] == name)


def test_debezium_snapshots_then_streams(api: ConnectApi, settings: Settings, request: pytest.FixtureRequest,
                                         capture: tuple[PipelineConfig, Settings]) -> None:
    mine, local = capture
    mongo = mongo_client(settings)
    if "operationTime" not in mongo.admin.command("isMaster"):
        pytest.fail(f"the Mongo server on port {settings.mongo_port} sends no operationTime: it predates "
                    "stack/java/FreshMongoServer.java's Debezium support; restart the stack's mongo service")
    request.addfinalizer(mongo.close)
    entity = mine.entity("stores")
    stores = mongo[mine.mongodb.database][entity.collection]
    opened = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    snapshot_doc = {"_id": "S001", "store_id": "S001", "name": "Snap", "created_at": opened,
                    "opening_hours": {"open": "08:00", "close": "22:00"}}
    stores.insert_one(dict(snapshot_doc))
    # Non-ASCII text, a whole and a fractional double, an int, nested objects in an array: how
    # JsonConverter writes each is part of the contract's bytes.
    insert_doc = {"_id": "S002", "store_id": "S002", "name": "Магазин №2 «ProbablyFresh»", "tags": ["a", "b"],
                  "price": 100.0, "total": 2.5, "count": 3, "lines": [{"sku": "P001", "qty": 2, "unit_price": 1.25}]}

    rendered = render(mine, local, "local", only=["mongodb_source"])
    (source,) = rendered.connectors
    assert source.config["topic.prefix"] == mine.kafka.topic_prefix
    apply(api, rendered, local, timeout_s=60)

    consumer, seen = _subscribe(settings.kafka("admin"), entity.cdc_topic), []
    raw: list[tuple[bytes, bytes | None]] = []
    try:
        def arrived(op: str, key: str) -> tuple[Any, Any] | None:
            _drain(consumer, seen, raw)
            return next(((k, v) for k, v in seen if v and v.get("__op") == op and k.get("id") == key), None)

        snap_key, snap = wait_until(lambda: arrived("r", "S001"), timeout_s=90, what="the snapshot record")
        stores.insert_one(dict(insert_doc))
        _, insert = wait_until(lambda: arrived("c", "S002"), timeout_s=60, what="the streamed insert")
        stores.update_one({"_id": "S002"}, {"$set": {"name": "Renamed"}})
        _, update = wait_until(lambda: arrived("u", "S002"), timeout_s=60, what="the streamed update")
        stores.delete_one({"_id": "S001"})
        wait_until(lambda: arrived("d", "S001") and any(k == snap_key and v is None for k, v in seen),
                   timeout_s=60, what="the streamed delete and its tombstone")
        _, delete = arrived("d", "S001")  # type: ignore[misc]
    finally:
        consumer.close()

    # Same layout as the fixture: a key with one field `id`; the flat document plus the metadata
    # fields; dates as epoch ms; nested documents and arrays as JSON; a tombstone after the delete.
    assert set(snap_key) == set(_fixture("snapshot_read")["key"]) == {"id"}
    assert set(_fixture("snapshot_read")["value"]) >= META
    assert set(snap) == {"_id", "store_id", "name", "created_at", "opening_hours"} | META
    assert snap["created_at"] == int(opened.timestamp() * 1000)
    assert snap["opening_hours"] == {"open": "08:00", "close": "22:00"}
    assert set(insert) == set(insert_doc) | META and insert["tags"] == ["a", "b"]
    assert update["name"] == "Renamed" and set(update) == set(insert)
    assert all(isinstance(r["__source_ts_ms"], int) for r in (snap, insert, update, delete))
    # The fixture (and tests/cdc_records.py, which every downstream test uses) matches what Debezium
    # really emits: the key id is the plain _id, __deleted a JSON boolean, the delete carries no _id.
    assert snap_key == {"id": "S001"} and isinstance(_fixture("snapshot_read")["key"]["id"], str)
    assert (snap["__deleted"], insert["__deleted"], update["__deleted"]) == (False, False, False)
    assert _fixture("snapshot_read")["value"]["__deleted"] is False
    assert delete == {"__op": "d", "__deleted": True, "__source_ts_ms": delete["__source_ts_ms"]}
    assert set(delete) == set(_fixture("delete_rewrite")["value"])
    # Key order, as Debezium writes the bytes (json.loads keeps it): the document's fields in
    # MongoDB's order, then the metadata fields in the fixture's order, which tests/cdc_records.py
    # reproduces (tests/unit/smt/test_smt_cdc_records.py pins the fixture to the same order).
    meta_order = [k for k in _fixture("snapshot_read")["value"] if k in META]
    print(f"Debezium key order: snapshot {list(snap)}; delete {list(delete)}")
    assert list(snap) == ["_id", "store_id", "name", "created_at", "opening_hours", *meta_order]
    assert list(insert) == list(update) == [*insert_doc, *meta_order]
    assert list(delete) == list(_fixture("delete_rewrite")["value"])

    # The bytes: the contract's builders write exactly what Debezium wrote, for the documents this
    # test wrote to MongoDB (keys, separators, number and non-ASCII formats, key order).
    updated_doc = {**insert_doc, "name": "Renamed"}
    expected = [
        ("snapshot_read", "S001", snapshot_doc, "r"), ("insert", "S002", insert_doc, "c"),
        ("update", "S002", updated_doc, "u"), ("delete_rewrite", "S001", None, "d"), ("tombstone", "S001", None, ""),
    ]
    captured = []
    for name, doc_id, doc, op in expected:
        key_bytes, value_bytes = next(
            (k, v) for k, v in raw if json.loads(k) == {"id": doc_id}
            and (v is None if not op else v is not None and json.loads(v)["__op"] == op))
        assert key_bytes == cdc_record.key(doc_id), name
        ts = None if value_bytes is None else json.loads(value_bytes)["__source_ts_ms"]
        if op == "d":
            assert value_bytes == cdc_record.delete_value(ts), name
        elif op:
            assert value_bytes == cdc_record.value(cdc_record.from_document(doc), op, ts), name
        captured.append({"name": name, "document": None if doc is None else json.loads(json_util.dumps(doc)),
                         "op": op or None, "ts_ms": ts, "key": key_bytes.decode(),
                         "value": None if value_bytes is None else value_bytes.decode()})
    _check_capture(captured)
