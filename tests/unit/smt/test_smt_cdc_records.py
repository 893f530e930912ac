"""The one CDC record helper reproduces the pinned Debezium fixtures byte for byte, keys in
Debezium's order (seen by tests/integration/connectors/test_debezium_capture.py from Debezium
3.5.0.Final: the document's fields in MongoDB's order, then __deleted, __op, __source_ts_ms)."""

from __future__ import annotations

import json
from collections import Counter

from fresh.pipeline import PipelineConfig
from smt.cdc_records import cdc_key, cdc_value, delete_value, dumps, fixtures, mixed_records

# Debezium 3.5.0.Final's order of the added fields, as written by ExtractNewDocumentState (not
# derived from the fixture or the helper: both are checked against it).
DEBEZIUM_META_ORDER = ["__deleted", "__op", "__source_ts_ms"]


def test_fixture_and_helper_keep_debeziums_key_order() -> None:
    for f in fixtures():
        value = f["value"]
        if value is None:
            continue
        assert list(value)[-3:] == DEBEZIUM_META_ORDER, f["name"]
        doc = [k for k in value if not k.startswith("__")]
        assert list(value) == [*doc, *DEBEZIUM_META_ORDER], f["name"]
    doc = {"_id": "S1", "store_id": "S1", "name": "x"}
    assert list(json.loads(cdc_value(doc, "c", 1))) == [*doc, *DEBEZIUM_META_ORDER]
    assert list(json.loads(delete_value(1))) == DEBEZIUM_META_ORDER
    assert cdc_value(doc, "u", 7) == (b'{"_id":"S1","store_id":"S1","name":"x",'
                                      b'"__deleted":false,"__op":"u","__source_ts_ms":7}')


def test_helper_matches_each_fixture() -> None:
    names = set()
    for f in fixtures():
        names.add(f["name"])
        value = f["value"]
        assert cdc_key(f["key"]["id"]) == dumps(f["key"])
        if value is None:
            continue
        meta = {k: value[k] for k in ("__op", "__source_ts_ms", "__deleted")}
        doc = {k: v for k, v in value.items() if not k.startswith("__")}
        if meta["__op"] == "d":
            assert doc == {}
            assert delete_value(meta["__source_ts_ms"]) == dumps(value)
        else:
            assert cdc_value(doc, meta["__op"], meta["__source_ts_ms"]) == dumps(value)
            assert doc["_id"] == next(v for k, v in doc.items() if k.endswith("_id") and k != "_id")
    assert names == {"snapshot_read", "insert", "update", "delete_rewrite", "tombstone"}


def test_mixed_records_cover_every_entity_and_op(pipeline: PipelineConfig) -> None:
    records = list(mixed_records(pipeline, 3000, seed=1))
    assert len(records) == 3000
    assert {r.topic for r in records} == set(pipeline.cdc_topics)
    ops = Counter(json.loads(r.value)["__op"] if r.value else "tombstone" for r in records)
    assert set(ops) == {"r", "c", "u", "d", "tombstone"} and ops["d"] == ops["tombstone"]
    assert list(mixed_records(pipeline, 50, seed=1)) == records[:50]
