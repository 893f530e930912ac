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

from collections.abc import Callable

from clickhouse import secure_records as sr
from clickhouse.backend import ChdbBackend
from clickhouse.migrate import migrate
from clickhouse.render import render_migrations
from fresh.pipeline import PipelineConfig
from fresh.settings import Settings
from fresh.wait import wait_until

T0 = 1_763_000_000_000  # when the cursor fetched the snapshot batch (ms)
READ = T0 + 800  # when the snapshot emitted the read records (worker clock)
CHANGED = T0 + 300  # when the documents changed in MongoDB (wallTime), between fetch and emit


def test_change_during_snapshot_wins_over_the_earlier_read(
    chdb_backend: ChdbBackend, pipeline: PipelineConfig, settings: Settings,
    make_unique_config: Callable[[PipelineConfig, str], PipelineConfig], new_tag: Callable[[], str],
) -> None:
    cfg = make_unique_config(pipeline, new_tag())
    migrate(chdb_backend, render_migrations(cfg, settings.kafka_bootstrap), cfg.clickhouse.raw_database)
    topic = cfg.entity("purchases").secure_topic
    p = sr.SecureProducer(settings.kafka_bootstrap)
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
