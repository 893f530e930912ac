"""Faults of the whole pipeline, MongoDB to MART, with nothing stood in for: the local stack's
MongoDB (its wire-protocol emulator with our change-stream layer, not mongod), the rendered
Debezium connector on the stack's Kafka Connect worker, the PII processor (a thread of this test),
and the ClickHouse ingest as the supervised service of `freshctl up` (`stack.supervisor`, in its
own process, own embedded-engine folder, queried through its endpoint).

- Kafka Connect SIGKILLed during a change stream, then started again (`LocalStack.up`): Debezium
  re-sends the changes after its last stored offset; they are counted at the CDC topics, pass the
  processor once each, and MART still ends equal to MongoDB, value for value (its version column).
- The ingest worker SIGKILLed while changes flow: its supervisor restarts it; MART ends equal to
  MongoDB, RAW holds every (key, version) of `_secure`.
- The largest record: a CDC value of exactly `pii_processor.max_record_bytes` reaches RAW (whole,
  decrypted) and MART; one byte more goes to the DLQ with its identifying headers, and the stream
  moves on.

Each fault test prints its counts and recovery times (docs/benchmarks.md records them); the
times are printed, never asserted.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bson
import pytest
from change_stream import ChangeStream
from confluent_kafka import Consumer, IsolationLevel, TopicPartition
from confluent_kafka.admin import OffsetSpec
from mart_vs_mongo import differences, wait_equal

from clickhouse.audit import audit
from clickhouse.backend import Backend
from clickhouse.endpoint import ChdbEndpointBackend, read_owner
from clickhouse.migrate import migrate_settings
from connectors.apply import apply, wait_for_state
from connectors.connect_api import ConnectApi
from connectors.render import render
from fresh.clients import kafka_admin, mongo_client
from fresh.errors import FreshError, WaitTimeoutError
from fresh.pipeline import PipelineConfig
from fresh.settings import Settings
from fresh.wait import wait_until
from generator.changes import DELETE, ChangeReport
from generator.domain import Domain, Plan
from generator.seed import MongoSink, seed
from smt.dlq import DLQ_COLLECTION, dlq_digest
from smt.envelope import decrypt
from smt.keyring import KeyringSource
from smt.processor import ensure_topics
from stack.services import LocalStack
from stack.supervisor import read_state

SEED = 11


@dataclass(frozen=True)
class Msg:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes] = field(default_factory=dict)


def read_all(settings: Settings, topics: list[str], committed: bool = True) -> list[Msg]:
    """Every record of `topics` up to each partition's end when called (read_committed by default)."""
    consumer = Consumer(settings.kafka("admin").config({
        "group.id": "unused", "enable.auto.commit": False, "fetch.max.bytes": 52_428_800,
        "isolation.level": "read_committed" if committed else "read_uncommitted"}))
    admin = kafka_admin(settings.kafka("admin"))
    meta = admin.list_topics(timeout=30).topics
    tps = [TopicPartition(t, p) for t in topics if t in meta for p in meta[t].partitions]
    level = IsolationLevel.READ_COMMITTED if committed else IsolationLevel.READ_UNCOMMITTED
    ends = {(tp.topic, tp.partition): f.result(30).offset
            for tp, f in admin.list_offsets({tp: OffsetSpec.latest() for tp in tps}, isolation_level=level).items()}
    consumer.assign([TopicPartition(t, p, 0) for t, p in ends])
    out: list[Msg] = []

    def at_end() -> bool:
        for m in consumer.consume(10_000, 0.5):
            if m.error() is None:
                headers: list[tuple[str, bytes | None]] = list(m.headers() or [])  # type: ignore[arg-type]
                out.append(Msg(m.topic() or "", m.key(), m.value(), {k: v or b"" for k, v in headers}))
        positions = consumer.position([TopicPartition(t, p) for t, p in ends])
        return all(ends[(tp.topic, tp.partition)] <= max(tp.offset, 0) for tp in positions)

    try:
        if ends:
            wait_until(at_end, timeout_s=120, what=f"reading {topics} to the end", interval_s=0.01)
    finally:
        consumer.close()
    return out


def version(m: Msg, business_key: str) -> tuple[str, int]:
    """(key, version) of a `_secure` record as RAW keys it: a delete event carries only `_id`."""
    doc = json.loads(m.value or b"{}")
    return str(doc.get(business_key) or doc.get("_id") or json.loads(m.key or b"{}")["id"]), int(doc["__source_ts_ms"])


def identities(cfg: PipelineConfig, records: list[Msg]) -> Counter[tuple[Any, ...]]:
    """Each CDC or `_secure` record as (entity, key, op, version); a tombstone as (entity, key); a
    record twice counts twice."""
    out: Counter[tuple[Any, ...]] = Counter()
    for m in records:
        entity = next(e.name for e in cfg.entities.values() if m.topic in (e.cdc_topic, e.secure_topic))
        doc = json.loads(m.value) if m.value is not None else None
        out[(entity, m.key) if doc is None else (entity, m.key, doc["__op"], doc["__source_ts_ms"])] += 1
    return out


@dataclass
class Live:
    """One isolated pipeline on the shared stack (see the module docstring)."""

    cfg: PipelineConfig
    settings: Settings  # the shared stack's servers; own stack home, chdb folder and pipeline.yaml
    ingest: LocalStack  # the stack home holding the supervised ingest service
    db: Any
    keyring: KeyringSource
    seeded: int

    def engine(self) -> Backend:
        """The ingest's engine through its endpoint (read anew: a restarted ingest has a new one)."""
        owner = read_owner(self.settings.chdb_path)
        assert owner is not None, "the ingest service does not own its engine folder"
        return ChdbEndpointBackend(owner, timeout_s=60)

    def query(self, sql: str) -> list[dict[str, Any]]:
        backend = self.engine()
        try:
            return backend.query(sql)
        finally:
            backend.close()

    def differences(self) -> list[str]:
        backend = self.engine()
        try:
            return differences(self.cfg, backend, self.db, self.keyring.current())
        finally:
            backend.close()

    def wait_equal(self, timeout_s: float, what: str) -> float:
        """Poll until MART equals MongoDB value for value; the seconds it took."""
        return wait_equal(self.differences, timeout_s, what, interval_s=0.2, max_interval_s=0.5)

    def cdc(self) -> list[Msg]:
        return read_all(self.settings, self.cfg.cdc_topics, committed=False)

    def raw_rows(self) -> int:
        return sum(int(self.query(f"SELECT count() AS n FROM {self.cfg.clickhouse.raw_database}.{e}")[0]["n"])
                   for e in self.cfg.entities)

    def check_layers(self) -> dict[str, int]:
        """The claims after a fault: `_secure` holds each CDC record once (read committed; the same
        multiset of (entity, key, op, version), Debezium's re-sent records included); RAW holds
        every (key, version) of `_secure`, MART FINAL one row per key. Returns the counts: CDC
        records, RAW rows and RAW rows repeating a (key, version)."""
        cfg = self.cfg
        cdc = self.cdc()
        secure = read_all(self.settings, cfg.secure_topics)
        cdc_ids, secure_ids = identities(cfg, cdc), identities(cfg, secure)
        assert secure_ids == cdc_ids, f"the processor lost {sum((cdc_ids - secure_ids).values())} and duplicated " \
                                      f"{sum((secure_ids - cdc_ids).values())} CDC records"
        assert read_all(self.settings, [cfg.kafka.dlq_topic]) == []
        raw_db, mart_db = cfg.clickhouse.raw_database, cfg.clickhouse.mart_database
        raw_rows = raw_repeats = 0
        for e in cfg.entities.values():
            want = {version(m, e.business_key) for m in secure if m.value is not None and m.topic == e.secure_topic}
            row = self.query(f"SELECT count() AS rows, uniqExact({e.business_key}, source_ts_ms) AS versions "
                             f"FROM {raw_db}.{e.name}")[0]
            assert int(row["versions"]) == len(want), f"RAW {e.name}: {row}, _secure: {len(want)} (key, version)"
            raw_rows += int(row["rows"])
            raw_repeats += int(row["rows"]) - int(row["versions"])
            mart = self.query(f"SELECT count() AS rows, uniqExact({e.business_key}) AS keys "
                              f"FROM {mart_db}.{e.name} FINAL")[0]
            assert int(mart["rows"]) == int(mart["keys"]), f"MART {e.name} FINAL: {mart}"
        backend = self.engine()
        try:
            assert audit(backend, cfg)[1] == []
        finally:
            backend.close()
        return {"cdc": len(cdc), "raw": raw_rows, "raw_repeats": raw_repeats}


@pytest.fixture
def live(pipeline: PipelineConfig, settings: Settings, unique: str, tmp_path: Path, local_stack: LocalStack,
         running_processor: Callable[..., Any]) -> Iterator[Live]:
    raw = pipeline.isolated(f"flt{unique}").model_dump(mode="json", exclude_none=True)
    raw["mongodb"]["database"] = f"flt_{unique}"
    cfg = PipelineConfig.model_validate(raw)
    config_file = tmp_path / "pipeline.yaml"
    config_file.write_text(cfg.to_yaml(), encoding="utf-8")
    own = settings.model_copy(update={"stack_home": tmp_path / "stack", "chdb_path": tmp_path / "chdb",
                                      "pipeline_config": config_file})
    mongo = mongo_client(settings)
    db = mongo[cfg.mongodb.database]
    sink = MongoSink(db, cfg)
    sink.ensure_indexes()
    seed(Domain(Plan(seed=SEED)), [sink], batch_size=500)
    seeded = sum(Plan(seed=SEED).counts.values())
    ingest = LocalStack(own)
    api = ConnectApi.from_settings(settings)
    keyring = KeyringSource(tmp_path / "keyring.json", allow_unwrapped=True)
    keyring.generate()
    try:
        # The `_secure` topics before the Kafka tables subscribe to them (as `freshctl up` does)
        ensure_topics(cfg, settings.kafka("admin"))
        ingest.start_supervised("ingest")
        live = Live(cfg, own, ingest, db, keyring, seeded)
        backend = live.engine()
        try:
            migrate_settings(own, cfg, backend)
        finally:
            backend.close()
        apply(api, render(cfg, own, "local", only=["mongodb_source"]), own, timeout_s=120)
        admin = kafka_admin(settings.kafka("admin"))
        wait_until(lambda: set(cfg.cdc_topics) <= set(admin.list_topics(timeout=5).topics), timeout_s=120,
                   what=f"Debezium to create the CDC topics {cfg.cdc_topics}")
        with running_processor(cfg, keyring, f"flt-{unique}"):
            yield live
    finally:
        ingest.stop_service("ingest", 90)
        name = cfg.kafka.connector_name
        try:
            if name in api.list_connectors():
                with contextlib.suppress(FreshError):  # a FAILED connector cannot stop; it is deleted all the same
                    api.stop(name)
                    wait_for_state(api, name, "STOPPED", timeout_s=60)
                api.delete(name)
        finally:
            mongo.drop_database(cfg.mongodb.database)
            mongo.close()


def expected_cdc(seeded: int, report: ChangeReport) -> int:
    """CDC records of a snapshot of `seeded` documents and the changes of `report` delivered once:
    one per insert or update, two per delete (the delete event and its tombstone)."""
    return seeded + sum(report.counts.values()) + report.counts[DELETE]


# ---- Kafka Connect SIGKILLed during a change stream ------------------------------------------


@pytest.fixture
def connect(local_stack: LocalStack) -> Iterator[LocalStack]:
    """The shared stack whose Connect worker a test may kill; it runs again when the test ends."""
    yield local_stack
    if local_stack.pid_of("connect") is None:
        local_stack.up(["connect"])


def test_connect_sigkill_during_a_change_stream(live: Live, connect: LocalStack) -> None:
    local_stack = connect
    live.wait_equal(300, "snapshot")
    assert len(live.cdc()) == live.seeded  # the count below rests on this: one record per document
    changes = 300
    stream = ChangeStream(live.db, live.cfg, seed=SEED, changes=changes, rate=25).start()
    # Kill while Debezium streams: some changes already at the CDC topics, most still to come.
    wait_until(lambda: len(live.cdc()) >= live.seeded + 60, timeout_s=120, what="60 changes at the CDC topics")
    local_stack.kill("connect")
    killed = time.monotonic()
    at_kill = len(live.cdc())
    report = stream.finish(300)  # the changes go on while Connect is down
    try:
        local_stack.up(["connect"])
    except WaitTimeoutError:  # its start outlasted the stack's 120 s bound (heavy load): it goes on, wait again
        local_stack.up(["connect"])
    fault_end = time.monotonic()
    recovery_s = live.wait_equal(300, f"after {changes} changes and a Connect SIGKILL")
    counts = live.check_layers()
    duplicated = counts["cdc"] - expected_cdc(live.seeded, report)
    # Records sharing a (topic, key, op, version): Debezium's re-sends, and whether the re-sent copy
    # carries another state than the first (full-document lookup reads the document as it is now).
    groups: dict[tuple[Any, ...], set[bytes]] = {}
    for m in live.cdc():
        if m.value is not None:
            doc = json.loads(m.value)
            groups.setdefault((m.topic, m.key, doc["__op"], doc["__source_ts_ms"]), set()).add(m.value)
    other_state = sum(len(values) - 1 for values in groups.values())
    print(f"connect SIGKILL during {changes} changes: cdc_records={counts['cdc']} (snapshot {live.seeded}, "
          f"{at_kill - live.seeded} change records before the kill) duplicated_by_debezium={duplicated} "
          f"raw_rows={counts['raw']} raw_rows_repeating_a_version={counts['raw_repeats']} lost=0 "
          f"same_version_other_state={other_state} connect_down_s={fault_end - killed:.1f} "
          f"recovery_s={recovery_s:.1f} (Connect ready -> MART = MongoDB)")
    assert duplicated >= 0, "fewer CDC records than changes: Debezium lost some"


# ---- the ClickHouse ingest SIGKILLed mid-batch -----------------------------------------------


def test_ingest_sigkill_mid_batch_is_restarted_by_its_supervisor(live: Live) -> None:
    live.wait_equal(300, "snapshot")
    changes = 400
    stream = ChangeStream(live.db, live.cfg, seed=SEED, changes=changes, rate=40).start()
    rows = live.raw_rows()
    wait_until(lambda: live.raw_rows() >= rows + 50, timeout_s=120, what="the ingest to land 50 changes in RAW")
    state = read_state(live.ingest, "ingest")
    worker = int(state["pid"])
    os.kill(worker, signal.SIGKILL)
    killed = time.monotonic()

    def restarted() -> bool:
        now = read_state(live.ingest, "ingest")
        return now.get("state") == "running" and now.get("pid") != worker and bool(live.query("SELECT 1 AS ok"))

    wait_until(restarted, timeout_s=120, what="the supervisor to restart the ingest worker", interval_s=0.1,
               max_interval_s=0.2)
    restarted_at = time.monotonic()
    at_restart = live.raw_rows()
    final_raw = live.seeded + changes  # one RAW row per change (a delete's tombstone makes none)
    assert at_restart < final_raw, "the killed ingest had consumed everything: the kill proves nothing"
    wait_until(lambda: live.raw_rows() > at_restart, timeout_s=180, what="the restarted ingest to consume",
               interval_s=0.1, max_interval_s=0.2)
    consuming_at = time.monotonic()
    report = stream.finish(300)
    assert stream.ended is not None
    fresh_s = live.wait_equal(300, f"after {changes} changes and an ingest SIGKILL")
    fresh_at = time.monotonic()
    counts = live.check_layers()
    state = read_state(live.ingest, "ingest")
    print(f"ingest SIGKILL mid-batch during {changes} changes: cdc_records={counts['cdc']} raw_rows={counts['raw']} "
          f"raw_rows_repeating_a_version={counts['raw_repeats']} lost=0 supervisor_restarts={state['restarts']} "
          f"kill->restarted_s={restarted_at - killed:.1f} restarted->consuming_s={consuming_at - restarted_at:.1f} "
          f"kill->consuming_s={consuming_at - killed:.1f} "
          f"restarted->MART=MongoDB_s={fresh_at - restarted_at:.1f} (the changes ended "
          f"{stream.ended - restarted_at:+.1f}s after the restart; MART equal {fresh_s:.1f}s after they ended and "
          "the ingest consumed again)")
    assert state["restarts"] == 1 and "SIGKILL" in state["last_error"]
    assert counts["cdc"] == expected_cdc(live.seeded, report)  # no Connect fault here: no CDC duplicate


# ---- the largest record ----------------------------------------------------------------------


def test_a_cdc_record_of_exactly_max_record_bytes_reaches_mart_one_byte_more_goes_to_the_dlq(live: Live) -> None:
    cfg = live.cfg
    limit = cfg.pii_processor.max_record_bytes
    entity = cfg.entity("customers")
    customers = live.db[entity.collection]
    live.wait_equal(300, "snapshot")
    template = customers.find_one({}, sort=[("_id", 1)])
    assert template is not None

    def insert(key: str, notes: int) -> int:
        """Insert a copy of `template` under `key` with `notes` characters of notes; its CDC value's size."""
        doc = {**template, "_id": key, entity.business_key: key, "notes": "n" * notes}
        customers.insert_one(doc)

        def size() -> int | None:
            found = [m for m in live.cdc() if m.topic == entity.cdc_topic and m.key and key in m.key.decode()]
            return len(found[0].value or b"") if found else None

        return int(wait_until(size, timeout_s=120, what=f"the CDC record of {key}"))

    # The CDC value is the document plus a constant envelope (same key length, same fields): measure it once.
    overhead = insert("BOUNDARY-CAL", 1000) - 1000
    at, above = insert("BOUNDARY-ATL", limit - overhead), insert("BOUNDARY-OVR", limit + 1 - overhead)
    assert (at, above) == (limit, limit + 1)
    bson_bytes = len(bson.encode(customers.find_one({"_id": "BOUNDARY-ATL"}) or {}))

    def in_dlq() -> list[Msg]:
        return read_all(live.settings, [cfg.kafka.dlq_topic])

    dlq = wait_until(in_dlq, timeout_s=120, what="the record one byte over the limit in the DLQ")
    assert [json.loads(m.key or b"{}") for m in dlq] == [{"id": "BOUNDARY-OVR"}]  # a list: one entry, once
    h = dlq[0].headers
    over = next(m for m in live.cdc() if m.key and b"BOUNDARY-OVR" in m.key).value or b""
    assert h["dlq.reason"] == b"oversize" and h["dlq.payload"] == b"whole"
    assert h["dlq.source.topic"] == entity.cdc_topic.encode() and int(h["dlq.source.bytes"]) == limit + 1
    assert h["dlq.digest"] == dlq_digest(live.keyring.current(), over).encode()
    assert decrypt(live.keyring.current().keys, (dlq[0].value or b"").decode(), DLQ_COLLECTION,
                   entity.cdc_topic) == over
    # The stream moves on: the oversized document is deleted (its delete event is small) and a
    # change follows; then MART equals MongoDB, the record at the limit included, its 524 KB notes
    # decrypted from RAW.
    customers.delete_one({"_id": "BOUNDARY-OVR"})
    customers.update_one({"_id": "BOUNDARY-CAL"}, {"$set": {"loyalty_status": "platinum"}})
    live.wait_equal(180, "after the boundary records")
    raw = live.query(f"SELECT length(payload) AS n FROM {cfg.clickhouse.raw_database}.customers "
                     f"WHERE customer_id = 'BOUNDARY-ATL'")
    print(f"largest record end to end: CDC value {limit} bytes (BSON document {bson_bytes} bytes; other "
          f"fields and Debezium's additions {overhead} bytes) -> _secure -> RAW payload {raw[0]['n']} bytes "
          f"-> MART; {limit + 1} bytes -> DLQ (oversize, payload whole)")
