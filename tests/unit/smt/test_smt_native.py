"""The native fast path (smt/native, Rust) against the Python path that defines the behaviour:
the same JSON values, envelopes that decrypt to the same plaintext, byte-identical deterministic
envelopes and blind indexes, and every unusual record handed back to Python."""

from __future__ import annotations

import json
import os

import pytest
from transform_cases import ALL_ACTIONS, ALL_ACTIONS_RECORDS, outcome

from fresh.pipeline import Entity, PipelineConfig
from smt.envelope import decrypt
from smt.keyring import Keyring
from smt.transform import Transformer
from tests.cdc_records import fixtures, mixed_records

pytestmark = pytest.mark.skipif(os.environ.get("FRESH_SKIP_NATIVE") == "1",
                                reason="FRESH_SKIP_NATIVE=1: smt/native was not built")
NATIVE_ACTIONS = {path: action for path, action in ALL_ACTIONS.items() if "[]" not in path}


def native_transform(t: Transformer, value: bytes) -> bytes | None:
    """The Rust sealer alone, under the transformer's current batch key."""
    assert t._plan_keyring is not None
    batch = t._batch_key(t._plan_keyring)
    return t._native.transform(value, batch.salt, batch.secret)


def pair(entity: Entity, ring: Keyring) -> tuple[Transformer, Transformer]:
    """(native, python-only) transformers of one entity, both planned for `ring`."""
    fast, slow = Transformer(entity, "US", 524288), Transformer(entity, "US", 524288, native=False)
    assert fast.native and not slow.native
    fast.plan(ring)
    return fast, slow


def test_native_is_built_and_runs_for_every_entity_with_rules(pipeline: PipelineConfig) -> None:
    import smt_native  # scripts/setup builds it; a missing build fails here, not silently slower

    assert smt_native.RecordSealer
    native = {name: Transformer(e, "US", 524288).native for name, e in pipeline.entities.items()}
    assert native == {"stores": True, "products": False, "customers": True, "purchases": True}
    arrays = Entity(collection="x", business_key="id", pii={"rows[].f": "encrypt"})
    assert not Transformer(arrays, "US", 524288).native  # array paths stay in Python


def test_native_matches_python_on_mixed_records_and_fixtures(pipeline: PipelineConfig, ring: Keyring) -> None:
    pairs = {e.cdc_topic: pair(e, ring) for e in pipeline.entities.values() if e.pii}
    values = [(r.topic, r.value) for r in mixed_records(pipeline, 3000, seed=11) if r.value and r.topic in pairs]
    values += [(pipeline.entities[f["entity"]].cdc_topic, json.dumps(f["value"]).encode())
               for f in fixtures() if f["value"] is not None and f["entity"] in ("customers", "purchases", "stores")]
    for topic, value in values:
        fast, slow = pairs[topic]
        native_out = native_transform(fast, value)
        assert native_out is not None, value  # the common case never leaves Rust
        assert outcome(lambda v=value, t=fast: t(v, ring), fast.entity, ring) == \
            outcome(lambda v=value, t=slow: t(v, ring), slow.entity, ring)
        python_out = slow(value, ring)
        assert python_out is not None
        assert list(json.loads(native_out)) == list(json.loads(python_out))  # same keys, same order
    assert len(values) > 2500


def test_native_matches_python_for_every_action(ring: Keyring) -> None:
    entity = Entity(collection="all", business_key="id", pii=NATIVE_ACTIONS)
    fast, slow = pair(entity, ring)
    for record in ALL_ACTIONS_RECORDS:
        value = json.dumps(record).encode()
        assert outcome(lambda v=value: fast(v, ring), entity, ring) == \
            outcome(lambda v=value: slow(v, ring), entity, ring), record
    # without its array, whose phone number (no policy path on the native side) the guard refuses
    value = json.dumps({k: v for k, v in ALL_ACTIONS_RECORDS[0].items() if k != "rows"}).encode()
    a, b = json.loads(native_transform(fast, value)), json.loads(slow(value, ring))
    assert a["phone"] == b["phone"] and a["contact"] == b["contact"]  # deterministic: byte-identical
    assert {k: v for k, v in a.items() if k.endswith("_bidx")} == {k: v for k, v in b.items() if k.endswith("_bidx")}
    assert list(a) == list(b)
    assert decrypt(ring.keys, a["email"], "all", "email") == b"a@b.co"


CUSTOMER_HANDED_TO_PYTHON = {
    "non-ASCII email": '{"_id":"C1","email":"Ånna@example.com"}',
    "null email": '{"_id":"C1","email":null}',
    "number email": '{"_id":"C1","email":42}',
    "object email": '{"_id":"C1","email":{"a":1}}',
    "email elsewhere": '{"_id":"C1","nickname":"anna@example.com"}',
    "lone surrogate": '{"_id":"C1","first_name":"\\ud800"}',
    "infinite float": '{"_id":"C1","score":1e400}',
    "escaped key": '{"_id":"C1","em\\u0061il":"a@b.co"}',
    "not an object": '["C1"]',
    "not JSON": '{"_id":',
    "not a phone": '{"_id":"C1","phone":"call me"}',
}


@pytest.mark.parametrize("value", list(CUSTOMER_HANDED_TO_PYTHON.values()), ids=list(CUSTOMER_HANDED_TO_PYTHON))
def test_native_hands_unusual_records_to_python(pipeline: PipelineConfig, ring: Keyring, value: str) -> None:
    fast, slow = pair(pipeline.entity("customers"), ring)
    raw = value.encode()
    assert native_transform(fast, raw) is None
    assert outcome(lambda: fast(raw, ring), fast.entity, ring) == outcome(lambda: slow(raw, ring), slow.entity, ring)


@pytest.mark.parametrize("customer", ['"a@b.co"', "[1]", "7", '{"em\\u0061il":"a@b.co"}'])
def test_native_hands_wrong_parents_to_python(pipeline: PipelineConfig, ring: Keyring, customer: str) -> None:
    fast, slow = pair(pipeline.entity("purchases"), ring)
    raw = b'{"_id":"T1","customer":' + customer.encode() + b"}"
    assert native_transform(fast, raw) is None
    assert outcome(lambda: fast(raw, ring), fast.entity, ring) == outcome(lambda: slow(raw, ring), slow.entity, ring)


def test_native_reads_json_as_python_does(pipeline: PipelineConfig, ring: Keyring) -> None:
    fast, slow = pair(pipeline.entity("purchases"), ring)
    cases = [
        b'{ "_id" : "T1" ,\n "customer" : { "email" : "\\u0041@B.co" , "phone" : " (212) 555-0147" } ,'
        b' "n" : [1, 2.50] }',
        b'{"_id":"T1","customer":null,"note":"\\u00e9\\n\\"q\\""}',
        b'{"_id":"T1","customer":{"email":"\\u001c A@B.CO\\t\\u000b"}}',  # Python str.strip() whitespace
        b'{"_id":"T1","customer":{}}',
    ]
    for raw in cases:
        out = native_transform(fast, raw)
        assert out is not None, raw
        assert outcome(lambda r=raw: fast(r, ring), fast.entity, ring) == \
            outcome(lambda r=raw: slow(r, ring), slow.entity, ring), raw


def test_native_refuses_repeated_keys_as_python_does(pipeline: PipelineConfig, ring: Keyring) -> None:
    fast, slow = pair(pipeline.entity("purchases"), ring)
    raw = b'{"_id":"T1","customer":{"email":"x@y.io"},"customer":{"email":"a@b.co"},"_id":"T2"}'
    assert native_transform(fast, raw) is None
    assert outcome(lambda: fast(raw, ring), fast.entity, ring) == outcome(lambda: slow(raw, ring), slow.entity, ring)
    assert outcome(lambda: slow(raw, ring), slow.entity, ring)[0] == "dlq"


def test_native_keeps_number_text(pipeline: PipelineConfig, ring: Keyring) -> None:
    fast, _ = pair(pipeline.entity("purchases"), ring)
    out = native_transform(fast, b'{"_id":"T1","total":2.50,"big":18446744073709551616,"z":-0}')
    assert out == b'{"_id":"T1","total":2.50,"big":18446744073709551616,"z":-0}'


def test_native_nonces_are_fresh(pipeline: PipelineConfig, ring: Keyring) -> None:
    fast, _ = pair(pipeline.entity("stores"), ring)
    value = b'{"_id":"S1","manager":"Anna Petrova"}'
    sealed = {json.loads(native_transform(fast, value) or b"{}")["manager"] for _ in range(2000)}
    assert len(sealed) == 2000
    assert {decrypt(ring.keys, s, "stores", "manager") for s in sealed} == {b"Anna Petrova"}


def test_transform_many_matches_one_by_one(pipeline: PipelineConfig, ring: Keyring) -> None:
    """A batch on two threads: tombstones, oversize and bad values, and a phone number only Python's
    phonenumbers may read (an extension) all come out as one record at a time would."""
    entity = pipeline.entity("customers")
    fast, slow = Transformer(entity, "US", 2000), Transformer(entity, "US", 2000, native=False)
    values: list[bytes | None] = [r.value for r in mixed_records(pipeline, 3000, seed=5) if r.topic == entity.cdc_topic]
    values += [None, b"{", b'{"_id":"C1","email":null}', b'{"_id":"C1","first_name":"' + b"A" * 3000 + b'"}',
               b'{"_id":"C1","phone":"+1-212-555-0147 ext. 12"}', b'{"_id":"C1","phone":"call me"}']
    batch = fast.transform_many(values, ring, threads=2)
    assert len(batch) == len(values) > 600

    def outcome_of(out: bytes | Exception | None) -> tuple[str, str]:
        return outcome(lambda: _raise_or_return(out), entity, ring)

    for value, out in zip(values, batch, strict=True):
        assert outcome_of(out) == outcome(lambda v=value: slow(v, ring), entity, ring), value
    reasons = [o.reason for o in batch if isinstance(o, Exception)]
    assert reasons == ["not_json", "null_pii", "oversize", "not_normalizable"]
    assert json.loads(batch[-2] or b"{}")["phone_bidx"] == ring.blind_index.index("+12125550147;ext=12", "phone")


def _raise_or_return(out: bytes | Exception | None) -> bytes | None:
    if isinstance(out, Exception):
        raise out
    return out


def phone_corpus() -> list[tuple[str, str]]:
    """(region, input): the generator's numbers (Faker, several locales), the CDC helper's formats,
    and random numbers in every region phonenumbers knows, written as people write them."""
    import random

    import phonenumbers
    from faker import Faker

    from tests.cdc_records import Documents

    rng = random.Random(17)
    docs = Documents(3)
    rows = [(region, docs.phone(i)) for i in range(1, 4001) for region in ("RU", "US")]
    for locale in ("ru_RU", "en_US", "en_GB", "de_DE", "fr_FR", "it_IT", "es_ES", "pt_BR", "ja_JP", "hi_IN",
                   "pl_PL", "uk_UA", "tr_TR", "nl_NL", "he_IL"):
        fake = Faker(locale)
        fake.seed_instance(1)
        rows += [(rng.choice((locale[-2:], "RU")), fake.phone_number()) for _ in range(600)]
    regions = sorted(phonenumbers.SUPPORTED_REGIONS)
    for _ in range(25_000):
        region = rng.choice(regions)
        example = phonenumbers.example_number(region)
        nsn = str(example.national_number) if example else "2125550147"
        nsn = nsn[:-4] + "".join(rng.choice("0123456789") for _ in range(4))
        cc = phonenumbers.country_code_for_region(region)
        written = rng.choice((f"+{cc}{nsn}", f"+{cc} {nsn[:3]} {nsn[3:]}", nsn, f"0{nsn}", f"8 {nsn}",
                              f"({nsn[:3]}) {nsn[3:6]}-{nsn[6:]}", f"00{cc} {nsn}", f"+{cc} (0) {nsn}",
                              f"{nsn[:2]}.{nsn[2:5]}.{nsn[5:]}"))
        rows.append((rng.choice((region, "RU", "US")), written))
    return rows


def test_plain_phone_numbers_normalize_as_phonenumbers_does() -> None:
    """The native path reads plain phone input with rlibphonenumber; it must give exactly what
    Python's phonenumbers gives (both pinned to Google's metadata v9.0.42), or leave it to Python."""
    import smt_native

    from smt.normalize import NormalizeError, normalize_phone

    rows = phone_corpus()
    native_read, python_read, mismatches = 0, 0, []
    for region, written in rows:
        native = smt_native.plain_phone(written, region)
        try:
            python = normalize_phone(written, region)
            python_read += 1
        except NormalizeError:
            python = "(not a phone number)"
        if native is None:
            continue
        native_read += 1
        if native != python:
            mismatches.append((region, written, native, python))
    assert mismatches[:10] == []
    assert native_read > 0.9 * python_read > 0.5 * len(rows)  # the fast path covers nearly every real number
    assert smt_native.plain_phone("+1 212 555 0147 x12", "US") is None  # an extension: Python decides
    assert smt_native.plain_phone("1-800-FLOWERS", "US") is None  # letters: Python decides
