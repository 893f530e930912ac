"""The pure record transform and its guard, on the pinned Debezium fixtures and on bad input."""

from __future__ import annotations

import json

import pytest
from transform_cases import ALL_ACTIONS, ALL_ACTIONS_RECORDS, general_path, outcome

from fresh.pipeline import Entity, PipelineConfig
from smt.envelope import BatchKey, decrypt, is_envelope
from smt.guard import looks_like_email, looks_like_phone
from smt.keyring import Keyring
from smt.normalize import NormalizeError, normalize_email, normalize_phone
from smt.transform import RecordError, Transformer, decrypt_record
from tests.cdc_records import fixtures


def transformer(pipeline: PipelineConfig, name: str) -> Transformer:
    return Transformer(pipeline.entity(name), "US", 524288)


def fixture(name: str) -> dict:
    return next(f for f in fixtures() if f["name"] == name)


def test_snapshot_read_customer(pipeline: PipelineConfig, ring: Keyring) -> None:
    f = fixture("snapshot_read")
    out = json.loads(transformer(pipeline, "customers")(json.dumps(f["value"]).encode(), ring))
    src = f["value"]
    for meta in ("_id", "customer_id", "__op", "__source_ts_ms", "__deleted", "loyalty_status", "registered_at"):
        assert out[meta] == src[meta]
    assert decrypt(ring.keys, out["email"], "customers", "email", "C000001") == b"anna.petrova@example.com"
    assert decrypt(ring.keys, out["phone"], "customers", "phone", "C000001") == b"+12125550147"
    assert out["email_bidx"] == ring.blind_index.index("anna.petrova@example.com", "email")
    assert out["phone_bidx"] == ring.blind_index.index("+12125550147", "phone")
    assert all(is_envelope(out[f]) for f in ("first_name", "last_name", "birth_date"))
    assert decrypt_record(out, pipeline.entity("customers"), ring)["first_name"] == "Anna"


def test_insert_purchase_nested_contact(pipeline: PipelineConfig, ring: Keyring) -> None:
    f = fixture("insert")
    out = json.loads(transformer(pipeline, "purchases")(json.dumps(f["value"]).encode(), ring))
    assert set(out["customer"]) == {"email", "phone", "email_bidx", "phone_bidx"}
    # the same index as the customer's: purchases join customers
    assert out["customer"]["email_bidx"] == ring.blind_index.index("anna.petrova@example.com", "email")
    assert decrypt(ring.keys, out["customer"]["email"], "purchases", "customer.email",
                   "T00000001") == b"anna.petrova@example.com"
    assert out["items"] == f["value"]["items"] and out["total"] == 2.5


def test_update_store_and_products_pass_through(pipeline: PipelineConfig, ring: Keyring) -> None:
    out = json.loads(transformer(pipeline, "stores")(json.dumps(fixture("update")["value"]).encode(), ring))
    assert decrypt(ring.keys, out["manager"], "stores", "manager", out["store_id"]) == b"Ivan Sidorov"
    raw = b'{"_id":"P001","product_id":"P001","name":"Milk","price":1.25,"__op":"r"}'
    assert transformer(pipeline, "products")(raw, ring) is raw


def test_delete_and_tombstone_pass_through(pipeline: PipelineConfig, ring: Keyring) -> None:
    t = transformer(pipeline, "customers")
    delete = fixture("delete_rewrite")["value"]
    assert json.loads(t(json.dumps(delete).encode(), ring)) == delete
    assert t(None, ring) is None
    boolean = {**delete, "__deleted": True}
    assert json.loads(t(json.dumps(boolean).encode(), ring)) == boolean


def test_actions_drop_blind_index_deterministic_keep_nullable(ring: Keyring) -> None:
    entity = Entity(collection="people", business_key="pid", pii={
        "a": "drop", "b": "blind_index", "c": "encrypt_deterministic", "d": {"action": "keep", "blind_index": True},
        "e": {"action": "encrypt", "nullable": True, "blind_index": True}, "rows[].f": "encrypt",
    })
    t = Transformer(entity, "US", 10_000)
    rec = {"pid": "1", "a": "x", "b": "y", "c": "z", "d": "w", "e": None, "rows": [{"f": "1"}, {"f": "2", "g": 3}]}
    out = json.loads(t(json.dumps(rec).encode(), ring))
    assert "a" not in out and "b" not in out and out["b_bidx"] == ring.blind_index("y")
    assert out["c"] == json.loads(t(json.dumps(rec).encode(), ring))["c"]
    assert out["d"] == "w" and out["d_bidx"] == ring.blind_index("w")
    assert out["e"] is None and out["e_bidx"] is None
    assert [decrypt(ring.keys, r["f"], "people", "rows[].f", "1") for r in out["rows"]] == [b"1", b"2"]
    assert out["rows"][1]["g"] == 3


@pytest.mark.parametrize(("value", "reason"), [
    (b"{not json", "not_json"),
    (b"\xff\xfe\x00", "not_json"),
    (b"", "not_json"),
    (b"NaN", "not_json"),
    (b'"a string"', "not_object"),
    (b'{"_id":"C1","email":42}', "wrong_type"),
    (b'{"_id":"C1","email":["a@b.co"]}', "wrong_type"),
    (b'{"_id":"C1","email":null}', "null_pii"),
    (b'{"_id":"C1","phone":"no digits here"}', "not_normalizable"),
    (b'{"_id":"C1","nickname":"Anna@Example.com"}', "plaintext_pii"),
    (b'{"_id":"C1","first_name":"' + b"A" * 2000 + b'"}', "oversize"),
])
def test_bad_records_raise_typed_errors_without_the_value(pipeline: PipelineConfig, ring: Keyring, value: bytes,
                                                         reason: str) -> None:
    t = Transformer(pipeline.entity("customers"), "US", 1500)
    with pytest.raises(RecordError) as err:
        t(value, ring)
    assert err.value.reason == reason
    assert "@" not in err.value.detail and "AAAA" not in err.value.detail


def test_nested_arrays_and_wrong_parent_types(pipeline: PipelineConfig, ring: Keyring) -> None:
    t = transformer(pipeline, "purchases")
    for customer in ('"anna@example.com"', '[{"email":"a@b.co"}]', "[[1]]"):
        with pytest.raises(RecordError, match="wrong_type"):
            t(b'{"_id":"T1","customer":' + customer.encode() + b"}", ring)
    entity = Entity(collection="x", business_key="id", pii={"rows[].f": "encrypt"})
    with pytest.raises(RecordError, match=r"rows\[\] holds a JSON array, expected objects"):
        Transformer(entity, "US", 10_000)(b'{"rows":[["f"]]}', ring)


def test_guard_refuses_plaintext_in_protected_field(pipeline: PipelineConfig, ring: Keyring, monkeypatch) -> None:
    t = Transformer(pipeline.entity("customers"), "US", 524288, native=False)  # the Python ciphers are patched
    # Simulate a broken encryption step: the guard must still stop the plaintext.
    monkeypatch.setattr(BatchKey, "seal", lambda self, plain, ad, nonce=None: plain.decode())
    cases = (("email", "a@b.co", "plaintext email"), ("phone", "+1 212 555 0147", "plaintext phone number"))
    for field, value, what in cases:
        with pytest.raises(RecordError, match=f"plaintext_pii: {field}: protected field looks like a {what}"):
            t(json.dumps({"_id": "C1", field: value}).encode(), ring)


@pytest.mark.parametrize(("raw", "expected"), [
    ("(212) 555-0147", "+12125550147"), ("212.555.0147", "+12125550147"), ("+44 20 7946 0958", "+442079460958"),
    ("+1-212-555-0147x123", "+12125550147;ext=123"), (" +7 (912) 345-67-89 ", "+79123456789"),
])
def test_phone_normalization(raw: str, expected: str) -> None:
    assert normalize_phone(raw, "US") == expected
    assert looks_like_phone(raw)


def test_email_normalization_and_detection() -> None:
    assert normalize_email("  Anna.Petrova@Example.COM ") == "anna.petrova@example.com"
    assert looks_like_email("write to x.y+z@mail.example.org please")
    assert not looks_like_email("pf1.k1.g.AAAA") and not looks_like_phone("1990-04-12T")
    with pytest.raises(NormalizeError):
        normalize_phone("call me", "US")


def test_compiled_ops_match_the_general_path_for_every_action(ring: Keyring) -> None:
    entity = Entity(collection="all", business_key="id", pii=ALL_ACTIONS)
    t = Transformer(entity, "US", 524288)
    for record in ALL_ACTIONS_RECORDS:
        value = json.dumps(record).encode()
        assert outcome(lambda v=value: t(v, ring), entity, ring) == \
            outcome(lambda v=value: general_path(t, v, ring), entity, ring), record
    # deterministic ciphertexts and indexes are byte-identical between the two paths
    value = json.dumps(ALL_ACTIONS_RECORDS[0]).encode()
    fast, slow = json.loads(t(value, ring)), json.loads(general_path(t, value, ring))
    assert fast["phone"] == slow["phone"] and fast["contact"] == slow["contact"]
    assert [k for k in fast if k.endswith("_bidx")] == [k for k in slow if k.endswith("_bidx")]
    assert all(fast[k] == slow[k] for k in fast if k.endswith("_bidx"))


def test_compiled_ops_match_the_general_path_on_mixed_records(pipeline: PipelineConfig, ring: Keyring) -> None:
    from tests.cdc_records import mixed_records

    transformers = {e.cdc_topic: Transformer(e, "US", 524288) for e in pipeline.entities.values()}
    for r in mixed_records(pipeline, 2000, seed=7):
        t = transformers[r.topic]
        if r.value is None or not t.rules:
            continue
        assert outcome(lambda r=r, t=t: t(r.value, ring), t.entity, ring) == \
            outcome(lambda r=r, t=t: general_path(t, r.value, ring), t.entity, ring)


def test_compiled_ops_follow_a_key_rotation(pipeline: PipelineConfig, keyring_source) -> None:
    t = transformer(pipeline, "customers")
    value = json.dumps(fixture("snapshot_read")["value"]).encode()
    before = keyring_source.current()
    assert json.loads(t(value, before))["email"].startswith(f"pf2.{before.active.id}.g.")
    keyring_source.rotate()
    after = keyring_source.current()
    assert after.active.id != before.active.id
    out = json.loads(t(value, after))
    assert out["email"].startswith(f"pf2.{after.active.id}.g.")
    assert decrypt(after.keys, out["email"], "customers", "email", "C000001") == b"anna.petrova@example.com"
