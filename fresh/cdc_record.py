"""The CDC record contract: the Kafka record Debezium's MongoDB source writes to a CDC topic with
our connector config (connectors/templates/mongodb-source.json.j2: ExtractNewDocumentState and
JsonConverter without schemas, the settings in `CONNECTOR_SETTINGS`). Defined here once; the PII
processor reads it, the `_secure` record (fresh/secure_record.py) keeps its key and metadata, and
the test builders (tests/cdc_records.py) write it.

    key     {"id":"<_id>"}
    value   the document's fields in MongoDB's order (nested documents and arrays as JSON, BSON
            dates as epoch ms), then "__deleted":false,"__op":"r|c|u","__source_ts_ms":<ms>
    delete  {"__deleted":true,"__op":"d","__source_ts_ms":<ms>} (no document field: the key holds
            the _id), then a tombstone (the same key, a null value)

Bytes: compact JSON (no spaces), UTF-8 with non-ASCII characters as they are, as Kafka's
JsonConverter writes them. Pinned against records Debezium 3.5.0.Final wrote:
smt/fixtures/debezium_capture.json, checked by tests/unit/smt/test_smt_cdc_records.py, and
re-captured by tests/integration/connectors/test_debezium_capture.py on every run.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

KEY_ID = "id"  # the key's one field, holding the document's _id
DOC_ID = "_id"
DELETED = "__deleted"
OP = "__op"
SOURCE_TS_MS = "__source_ts_ms"
META_FIELDS = (DELETED, OP, SOURCE_TS_MS)  # added after the document's fields, in this order
OPS = ("r", "c", "u", "d")  # snapshot read, insert, update, delete

# What the connector config must set for records of this shape (a unit test checks the rendered config).
CONNECTOR_SETTINGS = {
    "transforms.unwrap.type": "io.debezium.connector.mongodb.transforms.ExtractNewDocumentState",
    "transforms.unwrap.delete.tombstone.handling.mode": "rewrite-with-tombstone",
    "transforms.unwrap.add.fields": "op,source.ts_ms",
    "transforms.unwrap.add.fields.prefix": "__",
    "key.converter": "org.apache.kafka.connect.json.JsonConverter",
    "key.converter.schemas.enable": "false",
    "value.converter": "org.apache.kafka.connect.json.JsonConverter",
    "value.converter.schemas.enable": "false",
}


def encode(obj: Any) -> bytes:
    """JSON bytes as JsonConverter writes them: compact, UTF-8, non-ASCII unescaped."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def from_document(value: Any) -> Any:
    """A MongoDB document (as pymongo reads or writes it) as the value carries it: BSON dates as
    epoch milliseconds, nested documents and arrays kept."""
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, dict):
        return {k: from_document(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_document(v) for v in value]
    return value


def key(doc_id: str) -> bytes:
    return encode({KEY_ID: doc_id})


def value(doc: dict[str, Any], op: str, ts_ms: int) -> bytes:
    """A snapshot read, insert or update of `doc` (dates already epoch ms); deletes: `delete_value`."""
    if op not in OPS[:3]:
        raise ValueError(f"op must be r, c or u (deletes: delete_value), got {op!r}")
    return encode({**doc, DELETED: False, OP: op, SOURCE_TS_MS: ts_ms})


def delete_value(ts_ms: int) -> bytes:
    return encode({DELETED: True, OP: "d", SOURCE_TS_MS: ts_ms})
