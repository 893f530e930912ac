"""Test and benchmark builders of `_secure` records in the contract's shape (fresh/secure_record.py:
what the PII processor writes and ClickHouse reads), for the tests and benchmarks of ClickHouse.

Ciphertexts here are shape-valid envelopes (`pf2.<key id>.g.<base64url>`) over random bytes:
ClickHouse stores them and never decrypts, so it does not need real keys. Blind indexes are
HMAC-SHA256 hex of the normalized value with a fixed test key. Never use this for real data.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from fresh import secure_record as sr
from fresh.errors import FreshError
from fresh.kafka_connection import KafkaConnection
from smt.envelope import ALG_RANDOM, SCHEME

_TEST_INDEX_KEY = b"clickhouse-tests-blind-index-key"  # not a secret: test data only


def fake_envelope(plaintext: str) -> str:
    payload = os.urandom(16 + 12) + os.urandom(len(plaintext.encode()) + 16)  # salt, nonce, ciphertext, tag
    return f"{SCHEME}.k1.{ALG_RANDOM}." + base64.urlsafe_b64encode(payload).decode().rstrip("=")


def blind_index(normalized: str) -> str:
    return "i0." + hmac.new(_TEST_INDEX_KEY, normalized.encode(), hashlib.sha256).hexdigest()


def _meta(op: str, ts_ms: int) -> dict[str, Any]:
    return {sr.OP: op, sr.SOURCE_TS_MS: ts_ms, sr.DELETED: False}


def store(store_id: str, ts_ms: int, *, op: str = "c", network: str = "ProbablyFresh Almost",
          name: str | None = None) -> dict[str, Any]:
    return {
        "_id": store_id, "store_id": store_id, "name": name or f"Store {store_id}", "network": network,
        "city": "Samara", "address": "1 Main St", "opening_hours": {"open": "08:00", "close": "22:00"},
        "manager": fake_envelope("Anna Ivanova"), "created_at": ts_ms - 86_400_000, **_meta(op, ts_ms),
    }


def product(product_id: str, ts_ms: int, *, op: str = "c", price: float = 99.9,
            category: str = "dairy") -> dict[str, Any]:
    return {
        "_id": product_id, "product_id": product_id, "name": f"Product {product_id}", "category": category,
        "price": price, "unit": "pcs", "manufacturer": "Milky Way", "shelf_life_days": 14,
        "nutrition": {"kcal": 60, "protein": 3.2, "fat": 2.5, "carbs": 4.7}, "updated_at": ts_ms,
        **_meta(op, ts_ms),
    }


def customer(customer_id: str, ts_ms: int, *, op: str = "c", loyalty_status: str = "silver",
             home_store_id: str = "S001") -> dict[str, Any]:
    email, phone = f"{customer_id.lower()}@example.com", "+79125550000"
    return {
        "_id": customer_id, "customer_id": customer_id, "first_name": fake_envelope("Ivan"),
        "last_name": fake_envelope("Petrov"), "email": fake_envelope(email), "email_bidx": blind_index(email),
        "phone": fake_envelope(phone), "phone_bidx": blind_index(phone), "birth_date": fake_envelope("1990-01-02"),
        "loyalty_status": loyalty_status, "home_store_id": home_store_id, "registered_at": ts_ms - 1000,
        "updated_at": ts_ms, **_meta(op, ts_ms),
    }


def purchase(purchase_id: str, ts_ms: int, *, op: str = "c", store_id: str = "S001", customer_id: str = "C000001",
             items: list[tuple[str, str, int, float]] | None = None, status: str = "completed") -> dict[str, Any]:
    """`items`: (product_id, category, quantity, unit_price)."""
    lines: list[dict[str, Any]] = [
        {"product_id": pid, "name": f"Product {pid}", "category": cat, "quantity": qty, "unit_price": price,
         "line_total": round(qty * price, 2)}
        for pid, cat, qty, price in (items or [("P001", "dairy", 2, 50.0)])
    ]
    email = f"{customer_id.lower()}@example.com"
    return {
        "_id": purchase_id, "purchase_id": purchase_id, "store_id": store_id, "customer_id": customer_id,
        "customer": {"email": fake_envelope(email), "email_bidx": blind_index(email),
                     "phone": fake_envelope("+79125550000"), "phone_bidx": blind_index("+79125550000")},
        "items": lines, "total": round(sum(float(x["line_total"]) for x in lines), 2), "payment_method": "card",
        "status": status, "purchased_at": ts_ms, "updated_at": ts_ms, **_meta(op, ts_ms),
    }


def bench_purchases(count: int, prefix: str = "T", ts0: int = 1_763_000_000_000) -> Iterator[dict[str, Any]]:
    """`count` distinct two-line purchases (ids `<prefix>000000000`...), the benchmarks' load."""
    template = purchase("T0", ts0, items=[("P001", "dairy", 2, 50.0), ("P002", "bakery", 1, 30.5)])
    for i in range(count):
        pid = f"{prefix}{i:09d}"
        yield dict(template, _id=pid, purchase_id=pid, __source_ts_ms=ts0 + i)


def write_payloads_jsonl(path: Path, docs: Iterable[dict[str, Any]]) -> Path:
    """`docs` as JSON lines `{"payload": "<the document as JSON text>"}` (the engine's `file()` reads them);
    the text is the `_secure` value as the processor writes it (compact, what `SecureProducer` sends)."""
    with path.open("w", encoding="utf-8") as f:
        for doc in docs:
            f.write(json.dumps({"payload": sr.encode(doc).decode()}) + "\n")
    return path


def delete_marker(ts_ms: int) -> dict[str, Any]:
    """What ExtractNewDocumentState writes for a delete: no document field at all (send it with
    `doc_id`: the id is only in the message key), as Debezium 3.5.0.Final does."""
    return {sr.OP: "d", sr.SOURCE_TS_MS: ts_ms, sr.DELETED: True}


def message_key(doc_id: str) -> bytes:
    return sr.key(doc_id)


class SecureProducer:
    """Produce `_secure` records: JSON values, Debezium-shaped keys, raw bytes for broken ones."""

    def __init__(self, kafka: KafkaConnection, **config: Any):
        self._producer = Producer(kafka.config({"linger.ms": 20, "enable.idempotence": True, **config}))

    def send(self, topic: str, doc: dict[str, Any] | None, doc_id: str | None = None) -> None:
        """`doc` None is a tombstone for `doc_id`."""
        key_id = doc_id if doc_id is not None else str((doc or {}).get(sr.DOC_ID, ""))
        value = None if doc is None else sr.encode(doc)
        self._produce(topic, value, message_key(key_id))

    def send_raw(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self._produce(topic, value, key)

    def send_many(self, topic: str, docs: Iterable[dict[str, Any]]) -> int:
        n = 0
        for doc in docs:
            self.send(topic, doc)
            n += 1
        return n

    def _produce(self, topic: str, value: bytes | None, key: bytes | None) -> None:
        while True:
            try:
                self._producer.produce(topic, value=value, key=key)
                return
            except BufferError:  # local queue full: let deliveries drain, then retry
                self._producer.poll(0.5)

    def flush(self, timeout_s: float = 60.0) -> None:
        left = self._producer.flush(timeout_s)
        if left:
            raise FreshError(f"{left} record(s) not delivered to Kafka within {timeout_s:.0f}s; is the broker up?")
