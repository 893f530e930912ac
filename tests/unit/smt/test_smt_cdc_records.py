"""The CDC record contract (fresh/cdc_record.py) writes the bytes Debezium 3.5.0.Final wrote:
smt/fixtures/debezium_capture.json holds records captured from Debezium itself (and checked again
on every run of tests/integration/connectors/test_debezium_capture.py), next to the documents the
capture test wrote to MongoDB. The test builders (tests/cdc_records.py) use the contract."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from bson import json_util

from fresh import cdc_record
from fresh.pipeline import PipelineConfig
from fresh.settings import REPO_ROOT
from tests.cdc_records import fixtures, mixed_records

# Debezium 3.5.0.Final's order of the added fields, as ExtractNewDocumentState writes them (seen in
# the capture; written out here, not derived from the contract, which is checked against it).
DEBEZIUM_META_ORDER = ["__deleted", "__op", "__source_ts_ms"]


def _captured() -> list[dict[str, Any]]:
    text = (REPO_ROOT / "smt" / "fixtures" / "debezium_capture.json").read_text(encoding="utf-8")
    records: list[dict[str, Any]] = json.loads(text)["records"]
    return records


def test_contract_writes_the_bytes_debezium_wrote() -> None:
    captured = _captured()
    assert [c["op"] for c in captured] == ["r", "c", "u", "d", None]  # a delete, then its tombstone
    for c in captured:
        key = c["key"].encode()
        doc_id = json.loads(key)[cdc_record.KEY_ID]
        assert cdc_record.key(doc_id) == key, c["name"]
        if c["op"] is None:
            assert c["value"] is None
        elif c["op"] == "d":
            assert cdc_record.delete_value(c["ts_ms"]) == c["value"].encode()
        else:
            document = json_util.loads(json.dumps(c["document"]))  # the document as pymongo wrote it
            built = cdc_record.value(cdc_record.from_document(document), c["op"], c["ts_ms"])
            assert built == c["value"].encode(), c["name"]
    # What the capture covers: non-ASCII text unescaped, a whole double as 100.0, no spaces.
    insert = next(c["value"] for c in captured if c["op"] == "c")
    assert "Магазин" in insert and '"price":100.0' in insert and ", " not in insert and '": ' not in insert


def test_debeziums_key_order_in_the_capture_the_contract_and_the_documented_fixture() -> None:
    assert list(cdc_record.META_FIELDS) == DEBEZIUM_META_ORDER
    for c in _captured():
        if c["value"] is not None:
            value = json.loads(c["value"])
            assert list(value) == [*(c["document"] or {}), *DEBEZIUM_META_ORDER], c["name"]
    for f in fixtures():
        if f["value"] is not None:
            assert [k for k in f["value"] if k.startswith("__")] == DEBEZIUM_META_ORDER, f["name"]
            assert list(f["value"])[-3:] == DEBEZIUM_META_ORDER, f["name"]
        assert list(f["key"]) == [cdc_record.KEY_ID]


def test_the_connector_config_asks_debezium_for_this_shape(pipeline: PipelineConfig, settings: Any) -> None:
    from connectors.render import render

    (source,) = render(pipeline, settings, "local", only=["mongodb_source"]).connectors
    assert {k: source.config.get(k) for k in cdc_record.CONNECTOR_SETTINGS} == cdc_record.CONNECTOR_SETTINGS
    prefix = source.config["transforms.unwrap.add.fields.prefix"]
    added = [prefix + f.replace(".", "_") for f in source.config["transforms.unwrap.add.fields"].split(",")]
    assert set(added) == {cdc_record.OP, cdc_record.SOURCE_TS_MS}


def test_mixed_records_cover_every_entity_and_op(pipeline: PipelineConfig) -> None:
    records = list(mixed_records(pipeline, 3000, seed=1))
    assert len(records) == 3000
    assert {r.topic for r in records} == set(pipeline.cdc_topics)
    ops = Counter(json.loads(r.value)["__op"] if r.value else "tombstone" for r in records)
    assert set(ops) == {"r", "c", "u", "d", "tombstone"} and ops["d"] == ops["tombstone"]
    assert list(mixed_records(pipeline, 50, seed=1)) == records[:50]
