"""MART's version orders the events of one document as the connector emitted them, including a
change made while Debezium's initial snapshot is still running.

Debezium 3.5.0.Final (MongoDB) sets `source.ts_ms` from the change event's `wallTime` (the
write time, ms) for a streamed change, and from the Connect worker's clock at the moment it emits
a snapshot read (op `r`: `MongoDbSnapshotChangeEventSource` calls `readEvent(collection,
clock.currentTime())`). The snapshot reads documents in cursor batches and the change stream
started at the snapshot's beginning, so a document read in an earlier batch and changed before
its read record is emitted gets a read record whose ts_ms is LATER than the change's, although
the read record precedes the change in the partition. With `version = source_ts_ms`, the read
then won over the change (two deleted purchases stayed in MART). The records below are that
sequence, in the `_secure` shape and in the partition order Debezium produces them.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from clickhouse.backend import ChdbBackend
from clickhouse.migrate import migrate
from clickhouse.render import MIGRATIONS_DIR, render_migrations
from fresh.pipeline import PipelineConfig
from fresh.settings import Settings
from fresh.wait import wait_until
from stack.kafka_security import engine_connection
from tests import secure_records as sr

T0 = 1_763_000_000_000  # when the cursor fetched the snapshot batch (ms)
READ = T0 + 800  # when the snapshot emitted the read records (worker clock)
CHANGED = T0 + 300  # when the documents changed in MongoDB (wallTime), between fetch and emit


def test_change_during_snapshot_wins_over_the_earlier_read(
    chdb_backend: ChdbBackend, pipeline: PipelineConfig, settings: Settings,
    make_unique_config: Callable[[PipelineConfig, str], PipelineConfig], new_tag: Callable[[], str],
) -> None:
    cfg = make_unique_config(pipeline, new_tag())
    migrate(chdb_backend, render_migrations(cfg, engine_connection(settings, cfg)), cfg.clickhouse.raw_database)
    topic = cfg.entity("purchases").secure_topic
    p = sr.SecureProducer(settings.kafka("admin"))
    # Snapshot reads (op r), then the streamed changes the change stream buffered meanwhile.
    p.send(topic, sr.purchase("T00000001", READ, op="r"))
    p.send(topic, sr.purchase("T00000002", READ, op="r"))
    p.send(topic, sr.purchase("T00000003", READ, op="r", status="pending"))
    p.send(topic, sr.purchase("T00000004", READ, op="r"))
    p.send(topic, sr.delete_marker(CHANGED), doc_id="T00000001")
    p.send(topic, None, doc_id="T00000001")  # its tombstone
    p.send(topic, sr.delete_marker(CHANGED), doc_id="T00000002")
    p.send(topic, None, doc_id="T00000002")
    p.send(topic, sr.purchase("T00000003", CHANGED, op="u", status="completed"))
    # Two changes of one document in the same millisecond: the later one (in the partition) wins.
    p.send(topic, sr.purchase("T00000004", CHANGED, op="u", status="refunded"))
    p.send(topic, sr.purchase("T00000004", CHANGED, op="u", status="completed"))
    p.flush()

    raw, mart = cfg.clickhouse.raw_database, cfg.clickhouse.mart_database
    wait_until(lambda: chdb_backend.query(f"SELECT count() AS n FROM {raw}.purchases")[0]["n"] == 9,
               timeout_s=120, what=f"9 RAW rows in {raw}.purchases")
    rows = chdb_backend.query(f"SELECT purchase_id, status FROM {mart}.purchases FINAL "
                              "WHERE NOT is_deleted ORDER BY purchase_id")
    assert rows == [{"purchase_id": "T00000003", "status": "completed"},
                    {"purchase_id": "T00000004", "status": "completed"}]


def test_migration_010_recomputes_mart_of_an_existing_warehouse(
    chdb_backend: ChdbBackend, pipeline: PipelineConfig, settings: Settings, tmp_path: Path,
    make_unique_config: Callable[[PipelineConfig, str], PipelineConfig], new_tag: Callable[[], str],
) -> None:
    """A warehouse migrated before 010 kept the deleted purchase (the read's ts_ms won); `migrate`
    then applies 010, which recomputes MART from RAW by offset, and streaming goes on after it."""
    cfg = make_unique_config(pipeline, new_tag())
    before = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, before)
    for later in before.glob("*.sql.j2"):
        if later.name >= "010":
            later.unlink()
    migrate(chdb_backend, render_migrations(cfg, engine_connection(settings, cfg), directory=before),
            cfg.clickhouse.raw_database)
    topic = cfg.entity("purchases").secure_topic
    raw, mart = cfg.clickhouse.raw_database, cfg.clickhouse.mart_database
    p = sr.SecureProducer(settings.kafka("admin"))
    p.send(topic, sr.purchase("T00000001", READ, op="r"))
    p.send(topic, sr.purchase("T00000002", READ, op="r"))
    p.send(topic, sr.delete_marker(CHANGED), doc_id="T00000001")
    p.flush()

    def current() -> list[str]:
        rows = chdb_backend.query(f"SELECT purchase_id FROM {mart}.purchases FINAL WHERE NOT is_deleted "
                                  "ORDER BY purchase_id")
        return [str(r["purchase_id"]) for r in rows]

    wait_until(lambda: chdb_backend.query(f"SELECT count() AS n FROM {raw}.purchases")[0]["n"] == 3,
               timeout_s=120, what=f"3 RAW rows in {raw}.purchases before 010")
    assert current() == ["T00000001", "T00000002"]  # the defect: the deleted purchase stayed
    done = migrate(chdb_backend, render_migrations(cfg, engine_connection(settings, cfg)), cfg.clickhouse.raw_database)
    assert [m.name for m in done] == ["010_kafka_order_version"]
    assert current() == ["T00000002"]
    # the re-attached Kafka table streams through the new views
    p.send(topic, sr.delete_marker(CHANGED), doc_id="T00000002")
    p.flush()
    wait_until(lambda: current() == [], timeout_s=120, what="the second delete in MART after 010")
