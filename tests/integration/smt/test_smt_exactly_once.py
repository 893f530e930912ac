"""10,000 mixed CDC records through the processor on the real broker: every record lands exactly
once in `_secure` or the DLQ, no plaintext contact data leaks, and the crypto checks out."""

from __future__ import annotations

import json
import re
from collections import defaultdict

from smt_kafka_io import Kafka, Out

from fresh.cdc_record import key as cdc_key
from fresh.cdc_record import value as cdc_value
from fresh.pipeline import PipelineConfig
from fresh.wait import wait_until
from smt.envelope import decrypt, is_envelope
from smt.keyring import KeyringSource
from smt.normalize import normalize_email, normalize_phone
from tests.cdc_records import CdcRecord, Documents, mixed_records

N = 10_000
# Every phone shape the helper writes, and E.164 (a 13-digit epoch-ms number has no '+').
PHONE_SHAPES = re.compile(rb"\+\d{10,15}|\d{3}[ .)\-]+\d{3}[ .\-]+\d{4}|\+1 \d{3}-\d{3}-\d{4}")


def _bad_records(cfg: PipelineConfig) -> list[CdcRecord]:
    topic = cfg.entity("customers").cdc_topic
    doc = Documents().customer(999_001)
    return [
        CdcRecord(topic, cdc_key("X1"), b"{not json"),
        CdcRecord(topic, cdc_key("X2"), b"\x00\xff\xfe binary"),
        CdcRecord(topic, cdc_key("X3"), cdc_value({**doc, "email": 42}, "c", 1)),
        CdcRecord(topic, cdc_key("X4"), cdc_value({**doc, "phone": None}, "c", 2)),
        CdcRecord(topic, cdc_key("X5"), cdc_value({**doc, "note": "mail me at x.y@example.org"}, "c", 3)),
    ]


def test_ten_thousand_mixed_records_exactly_once_and_no_plaintext(
    kafka: Kafka, secure_pipeline: PipelineConfig, keyring_source: KeyringSource, start_processor
) -> None:
    cfg = secure_pipeline
    bad = _bad_records(cfg)
    records = list(mixed_records(cfg, N - len(bad), seed=7)) + bad
    assert kafka.produce(records) == N
    proc = start_processor(cfg, keyring_source)

    def done() -> bool:
        return proc.processor.counters.consumed >= N
    wait_until(done, timeout_s=120, what=f"the processor to consume {N} records")
    proc.stop_and_join()

    secure = kafka.read_to_end(cfg.secure_topics)
    dlq = kafka.read_to_end([cfg.kafka.dlq_topic])
    assert len(secure) + len(dlq) == N
    assert sorted(o.key for o in dlq) == sorted(r.key for r in bad)
    assert {o.headers["dlq.reason"] for o in dlq} == {b"not_json", b"wrong_type", b"null_pii", b"plaintext_pii"}

    # No plaintext email or phone anywhere in _secure: no '@' at all; no phone in any of the input
    # formats or in E.164 (the input phones all match PHONE_SHAPES, checked first).
    inputs: dict[tuple[str, int], dict] = {}
    input_phones = 0
    for r in records:
        if r.value is None or r in bad:
            continue
        doc = json.loads(r.value)
        inputs[(cfg.entity_for_topic(r.topic).secure_topic, doc["__source_ts_ms"])] = doc
        for phone in (doc.get("phone"), (doc.get("customer") or {}).get("phone")):
            if phone:
                assert PHONE_SHAPES.search(phone.encode())
                assert PHONE_SHAPES.search(normalize_phone(phone, cfg.pii_processor.default_region).encode())
                input_phones += 1
    assert input_phones > 1000
    for o in secure:
        if o.value is not None:
            assert b"@" not in o.value, o.topic
            assert not PHONE_SHAPES.search(o.value), o.topic

    # Keys and partitions kept; tombstones and deletes passed through.
    by_key = defaultdict(list)
    for r in records:
        by_key[(r.topic, r.key)].append(r)
    assert sum(o.value is None for o in secure) == sum(r.value is None for r in records)
    assert any(o.value and b'"__deleted":true' in o.value for o in secure)
    assert {o.key for o in secure} <= {r.key for r in records}

    ring = keyring_source.current()
    customers, purchases = cfg.entity("customers"), cfg.entity("purchases")
    det: dict[str, set[str]] = defaultdict(set)
    bidx_by_customer: dict[str, set[str]] = defaultdict(set)
    seen = set()
    for o in secure:
        if o.value is None:
            continue
        out = json.loads(o.value)
        ident = (o.topic, out["__source_ts_ms"])
        assert ident not in seen, f"duplicate {ident}"
        seen.add(ident)
        src = inputs[ident]
        if out["__op"] == "d":
            assert out == src
            continue
        if o.topic == customers.secure_topic:
            for f in ("first_name", "last_name", "birth_date"):
                assert decrypt(ring.keys, out[f], "customers", f, src["customer_id"]).decode() == src[f]
            email = decrypt(ring.keys, out["email"], "customers", "email", src["customer_id"]).decode()
            assert email == normalize_email(src["email"])
            phone = decrypt(ring.keys, out["phone"], "customers", "phone", src["customer_id"]).decode()
            assert phone == normalize_phone(src["phone"], cfg.pii_processor.default_region)
            assert out["email_bidx"] == ring.blind_index.index(normalize_email(src["email"]), "email")
            status = decrypt(ring.keys, out["loyalty_status"], "customers", "loyalty_status").decode()
            assert status == src["loyalty_status"]
            det[src["loyalty_status"]].add(out["loyalty_status"])
            bidx_by_customer[src["customer_id"]].add(out["email_bidx"])
            assert out["customer_id"] == src["customer_id"] and out["__op"] == src["__op"]
        elif o.topic == purchases.secure_topic:
            c = out["customer"]
            assert is_envelope(c["email"]) and is_envelope(c["phone"])
            email = decrypt(ring.keys, c["email"], "purchases", "customer.email", src["purchase_id"]).decode()
            assert email == normalize_email(src["customer"]["email"])
            bidx_by_customer[src["customer_id"]].add(c["email_bidx"])
            assert out["items"] == src["items"]
        elif o.topic == cfg.entity("stores").secure_topic:
            assert decrypt(ring.keys, out["manager"], "stores", "manager", src["store_id"]).decode() == src["manager"]
        else:
            assert out == src  # products: no PII, unchanged
    assert len(seen) == len(inputs)
    # Deterministic: equal inputs, equal ciphertexts. Blind index: equal across collections.
    assert det and all(len(v) == 1 for v in det.values())
    assert len({next(iter(v)) for v in det.values()}) == len(det)
    assert bidx_by_customer and all(len(v) == 1 for v in bidx_by_customer.values())


def test_outputs_keep_partition_by_key(kafka: Kafka, secure_pipeline: PipelineConfig, keyring_source: KeyringSource,
                                       start_processor) -> None:
    cfg = secure_pipeline
    records = list(mixed_records(cfg, 600, seed=3))
    kafka.produce(records)
    proc = start_processor(cfg, keyring_source)
    wait_until(lambda: proc.processor.counters.consumed >= 600, timeout_s=60, what="600 records consumed")
    proc.stop_and_join()
    inputs = kafka.read_to_end(cfg.cdc_topics)
    where = {(cfg.entity_for_topic(o.topic).secure_topic, o.key): o.partition for o in inputs}
    out: list[Out] = kafka.read_to_end(cfg.secure_topics)
    assert len(out) == 600
    assert all(where[(o.topic, o.key)] == o.partition for o in out)
