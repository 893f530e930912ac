"""The guard (smt/guard.py) on hostile records, on both paths: plaintext emails and phone numbers
anywhere (escaped, as object keys, in any script, full-width, split by invisible characters, in free
text), ambiguous and too-deep JSON, and no plaintext in any DLQ detail. Property-based: generated
records with PII planted at random places never reach the output, and the native path (smt/native)
makes the same decision as the Python path for every input."""

from __future__ import annotations

import contextlib
import json
import os
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fresh import cdc_record
from fresh.pipeline import Entity, PipelineConfig
from generator.domain import Domain, Plan
from smt.guard import fold, is_candidate, phone_thresholds, scan_record
from smt.keyring import Keyring
from smt.normalize import NormalizeError, normalize_email
from smt.transform import DUPLICATE_KEY, NOT_JSON, NOT_NORMALIZABLE, PLAINTEXT_PII, REASONS, RecordError, Transformer

try:
    import smt_native
except ImportError:  # FRESH_SKIP_NATIVE=1: the Python path alone is tested
    smt_native = None

NATIVE = smt_native is not None and os.environ.get("FRESH_SKIP_NATIVE") != "1"
REGION = "RU"
EXAMPLES = int(os.environ.get("FRESH_FUZZ_EXAMPLES", "300"))  # a longer run: FRESH_FUZZ_EXAMPLES=20000
CUSTOMERS = Entity(collection="customers", business_key="customer_id", pii={
    "email": {"action": "encrypt", "blind_index": True, "normalize": "email"},
    "phone": {"action": "encrypt", "blind_index": True, "normalize": "phone"},
    "first_name": "encrypt",
})
PRODUCTS = Entity(collection="products", business_key="product_id", pii={})
ENTITIES = [CUSTOMERS, PRODUCTS]


def transformers(entity: Entity, ring: Keyring) -> list[Transformer]:
    """The Python path, and the native path where it runs for this entity."""
    paths = [Transformer(entity, REGION, 524288, native=False)]
    fast = Transformer(entity, REGION, 524288)
    if fast.native:
        paths.append(fast)
    for t in paths:
        t.plan(ring)
    return paths


def decide(t: Transformer, value: bytes, ring: Keyring) -> bytes | str:
    """The output, or the DLQ reason; through transform_many, the processor's entry."""
    out = t.transform_many([value], ring)[0]
    if isinstance(out, RecordError):
        return out.reason
    assert out is not None
    return out


def reasons(entity: Entity, value: bytes, ring: Keyring) -> set[str]:
    outs = (decide(t, value, ring) for t in transformers(entity, ring))
    return {out if isinstance(out, str) else "emitted" for out in outs}


HOSTILE = {
    "escaped @": b'{"customer_id":"C1","notes":"anna\\u0040example.com"}',
    "escaped everything": b'{"customer_id":"C1","notes":"\\u0061nna\\u0040ex\\u0061mple.com"}',
    "email as key": b'{"customer_id":"C1","contacts":{"anna@example.com":1}}',
    "email as escaped key": b'{"customer_id":"C1","contacts":{"anna\\u0040example.com":1}}',
    "cyrillic local part": '{"customer_id":"C1","notes":"анна@example.com"}'.encode(),
    "cyrillic domain": '{"customer_id":"C1","notes":"anna@пример.рф"}'.encode(),
    "full-width at": '{"customer_id":"C1","notes":"anna＠example.com"}'.encode(),
    "small at": '{"customer_id":"C1","notes":"anna﹫example.com"}'.encode(),
    "zero-width in email": '{"customer_id":"C1","notes":"an\u200bna@exa\u200bmple.com"}'.encode(),
    "phone in free text": '{"customer_id":"C1","notes":"звоните 8 (912) 123-45-67 вечером"}'.encode(),
    "international phone": b'{"customer_id":"C1","notes":"call +44 20 7946 0958"}',
    "full-width phone": '{"customer_id":"C1","notes":"＋７ ９１２ １２３ ４５ ６７"}'.encode(),
    "arabic-indic phone": '{"customer_id":"C1","notes":"+٧ ٩١٢ ١٢٣ ٤٥ ٦٧"}'.encode(),
    "phone as key": b'{"customer_id":"C1","by_phone":{"+79121234567":true}}',
    "phone in array": b'{"customer_id":"C1","tags":["a",["b","89121234567"]]}',
    "escaped phone digits": b'{"customer_id":"C1","notes":"\\u0038 912 123 45 67"}',
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.parametrize("entity", ENTITIES, ids=lambda e: e.collection)
def test_plaintext_outside_the_policy_goes_to_the_dlq_on_every_path(case: str, entity: Entity, ring: Keyring) -> None:
    assert reasons(entity, HOSTILE[case], ring) == {PLAINTEXT_PII}


@pytest.mark.parametrize("value", [
    b'{"customer_id":"C1","email":"a@x.io","email":"b@y.io"}',
    b'{"customer_id":"C1","n":{"k":1,"k":2}}',
    b'{"customer_id":"C1","n":[{"k":1,"\\u006b":2}]}',
], ids=["top-level", "nested", "escaped twin"])
@pytest.mark.parametrize("entity", ENTITIES, ids=lambda e: e.collection)
def test_a_key_written_twice_is_ambiguous_and_goes_to_the_dlq(value: bytes, entity: Entity, ring: Keyring) -> None:
    assert reasons(entity, value, ring) == {DUPLICATE_KEY}


@pytest.mark.parametrize("depth", [129, 300, 5000])
@pytest.mark.parametrize("entity", ENTITIES, ids=lambda e: e.collection)
def test_nesting_deeper_than_the_limit_goes_to_the_dlq(depth: int, entity: Entity, ring: Keyring) -> None:
    value = b'{"customer_id":"C1","n":' + b"[" * depth + b"]" * depth + b"}"
    assert reasons(entity, value, ring) == {NOT_JSON}


@pytest.mark.parametrize("entity", ENTITIES, ids=lambda e: e.collection)
def test_nesting_within_the_limit_passes(entity: Entity, ring: Keyring) -> None:
    value = b'{"customer_id":"C1","n":' + b"[" * 90 + b"]" * 90 + b"}"
    assert reasons(entity, value, ring) == {"emitted"}


@pytest.mark.parametrize("value", [" ", "junk", "a@b@c", "12", "0000000", "8-800-FLOWERS"])
def test_junk_in_a_normalized_field_is_not_normalizable(value: str, ring: Keyring) -> None:
    field = "email" if "@" in value or value.strip() in ("", "junk") else "phone"
    record = json.dumps({"customer_id": "C1", field: value}).encode()
    assert reasons(CUSTOMERS, record, ring) == {NOT_NORMALIZABLE}


def test_spellings_of_one_address_give_one_blind_index(ring: Keyring) -> None:
    spellings = ["anna@example.com", " ANNA@Example.COM ", "ａｎｎａ＠ｅｘａｍｐｌｅ．ｃｏｍ", "an\u200bna@example.com",
                 "anna\u00ad@example.com"]
    idn = ["Анна@Пример.РФ", "анна@xn--e1afmkfd.xn--p1ai"]
    for group in (spellings, idn):
        indexes = {json.loads(decide(t, json.dumps({"customer_id": "C1", "email": s}).encode(), ring))["email_bidx"]
                   for t in transformers(CUSTOMERS, ring) for s in group}
        assert len(indexes) == 1, group


def test_generator_data_passes_the_guard_false_positives_zero(pipeline: PipelineConfig, ring: Keyring) -> None:
    """The guard's false-positive rate on the generator's data (seed 42, the shipped policy, every
    store, product, customer and purchase (3,000 at most each), as the connector's JSON): 0 records refused."""
    domain = Domain(Plan(seed=42))
    checked = expected = 0
    for name, entity in pipeline.entities.items():
        paths = transformers(entity, ring)
        expected += min(domain.plan.counts[name], 3000) * len(paths)
        for i in range(min(domain.plan.counts[name], 3000)):
            value = cdc_record.encode(cdc_record.from_document(domain.build(name, i)))
            for t in paths:
                out = decide(t, value, ring)
                assert isinstance(out, bytes), (name, i, out)
                checked += 1
    assert checked == expected > 2000


def test_no_dlq_detail_quotes_the_record(ring: Keyring) -> None:
    """Records whose keys and values are emails and phone numbers, one per DLQ reason the content
    can cause: the detail names policy paths and positions only."""
    secrets = ["anna@example.com", "bob@example.org", "+79121234567", "8 912 765-43-21", "zoe@пример.рф"]
    records = [
        {"customer_id": "C1", "contacts": {"anna@example.com": "bob@example.org"}},
        {"customer_id": "C1", "+79121234567": ["8 912 765-43-21"]},
        {"customer_id": "C1", "email": "zoe@пример.рф@x"},
        {"customer_id": "C1", "phone": "anna@example.com"},
        {"customer_id": "C1", "email": {"anna@example.com": 1}},
        {"customer_id": "C1", "email": 79121234567},
    ]
    values = [json.dumps(r, ensure_ascii=False).encode() for r in records]
    values += [b'{"customer_id":"C1","anna@example.com":1,"anna@example.com":2}', b'{"bob@example.org": [}']
    for value in values:
        for t in transformers(CUSTOMERS, ring):
            out = t.transform_many([value], ring)[0]
            assert isinstance(out, RecordError), value
            text = f"{out.reason} {out.detail} {out}"
            for s in [*secrets, "anna", "bob", "zoe", "9121234567", "7654321"]:
                assert s not in text, (value, text)


@pytest.mark.skipif(not NATIVE, reason="smt/native not built")
def test_native_lookalike_set_covers_every_code_point_python_folds_to_a_digit_at_or_plus() -> None:
    missing = []
    for cp in range(0x80, 0x110000):
        c = chr(cp)
        if 0xD800 <= cp <= 0xDFFF:
            continue
        folded = unicodedata.normalize("NFKC", c)
        folds_to_one = any(x in "@+" or unicodedata.decimal(x, None) is not None for x in folded)
        if folds_to_one and not smt_native.is_suspicious(c, (99, 99)):
            missing.append(hex(cp))
    assert not missing


TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
PII_VALUES = ["anna@example.com", "Анна@Пример.РФ", "a＠b.co", "x\u200by@mail.ru", "+7 912 123-45-67", "8(912)1234567",
              "+44 20 7946 0958", "８ ９１２ １２３ ４５ ６７", "+1-212-555-0147"]
PII = st.sampled_from(PII_VALUES)


@given(text=st.one_of(TEXT, st.builds(lambda a, p, b: a + p + b, TEXT, PII, TEXT)))
@settings(max_examples=EXAMPLES * 3, deadline=None)
def test_native_suspicion_covers_python_candidates(text: str) -> None:
    """Whenever Python's guard would look at a string, the native path hands the record back."""
    if not NATIVE:
        pytest.skip("smt/native not built")
    th = phone_thresholds(REGION)
    if is_candidate(fold(text), th):
        assert smt_native.is_suspicious(text, th)


@given(st.text(alphabet=st.characters(codec="ascii"), max_size=40) | st.emails())
@settings(max_examples=EXAMPLES * 3, deadline=None)
def test_native_email_normalization_is_pythons_where_it_answers(value: str) -> None:
    if not NATIVE:
        pytest.skip("smt/native not built")
    native = smt_native.simple_email(value)
    if native is not None:
        assert native == normalize_email(value)
    else:
        with contextlib.suppress(NormalizeError):
            normalize_email(value)  # refusing is Python's answer too; only a crash would fail here


JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53),
                      st.floats(allow_nan=False, allow_infinity=False), TEXT, PII)
JSON = st.recursive(JSON_LEAF, lambda kids: st.lists(kids, max_size=4)
                    | st.dictionaries(st.one_of(TEXT, PII), kids, max_size=4), max_leaves=12)
RECORD = st.fixed_dictionaries(
    {"customer_id": st.just("C1")},
    optional={"email": st.one_of(PII, TEXT, st.none()), "phone": st.one_of(PII, TEXT), "first_name": TEXT,
              "notes": JSON, "tags": JSON, "nested": JSON},
)


def planted(record: object) -> set[str]:
    out: set[str] = set()
    stack = [record]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            out.update(p for p in PII_VALUES if p in node)
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return out


@given(record=RECORD, ascii_only=st.booleans(), entity=st.sampled_from(ENTITIES))
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])
def test_every_record_ends_in_secure_without_plaintext_or_in_the_dlq_with_a_reason(
        record: dict[str, object], ascii_only: bool, entity: Entity, ring: Keyring) -> None:
    value = json.dumps(record, ensure_ascii=ascii_only).encode()
    decisions = []
    for t in transformers(entity, ring):
        out = decide(t, value, ring)
        if isinstance(out, bytes):
            emitted = json.loads(out)
            assert scan_record(emitted, REGION, {id(emitted): frozenset({"email", "phone", "first_name",
                                                                         "email_bidx", "phone_bidx"})}) is None
            assert not planted(emitted), "planted PII reached the output"
            decisions.append("emitted")
        else:
            assert out  # a reason, always
            decisions.append(out)
    assert len(set(decisions)) == 1, decisions  # the native path decides as Python does


@given(digest=st.binary(min_size=32, max_size=32).map(bytes.hex), ident=st.integers(0, 10**12))
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_hex_digests_and_ids_are_not_phone_numbers(digest: str, ident: int, ring: Keyring) -> None:
    value = json.dumps({"customer_id": f"C{ident:012d}", "checksum": digest, "ref": f"T{ident}"}).encode()
    assert reasons(PRODUCTS, value, ring) == {"emitted"}


@pytest.mark.parametrize(("value", "reason"), [
    (b'{"customer_id":"C1","x":"\xff\xfe"}', NOT_JSON),  # not UTF-8
    (b'{"customer_id":"C1","x":NaN}', NOT_JSON),
    (b'{"customer_id":"C1","x":1e400}', NOT_JSON),  # not finite
    (b'{"customer_id":"C1","x":"\\ud800"}', NOT_JSON),  # a lone surrogate
    (b"", NOT_JSON),
    (b"[1,2]", "not_object"),
])
@pytest.mark.parametrize("entity", ENTITIES, ids=lambda e: e.collection)
def test_documented_limits_hold_on_every_path(value: bytes, reason: str, entity: Entity, ring: Keyring) -> None:
    assert reasons(entity, value, ring) == {reason}


@given(value=st.binary(max_size=300) | st.builds(lambda r, cut: json.dumps(r).encode()[:cut], RECORD,
                                                  st.integers(0, 400)))
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_garbage_ends_in_the_dlq_with_a_reason_or_clean_on_every_path(value: bytes, ring: Keyring) -> None:
    for entity in ENTITIES:
        decisions = set()
        for t in transformers(entity, ring):
            out = decide(t, value, ring)
            if isinstance(out, bytes):
                assert not planted(json.loads(out))
                decisions.add("emitted")
            else:
                assert out in REASONS
                decisions.add(out)
        assert len(decisions) == 1, decisions


@given(email=st.emails(), phone=st.sampled_from(PII_VALUES[4:]), name=TEXT)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_decrypting_what_was_encrypted_gives_the_normalized_input_back(email: str, phone: str, name: str,
                                                                       ring: Keyring) -> None:
    from smt.normalize import normalize_phone
    from smt.transform import decrypt_record

    value = json.dumps({"customer_id": "C7", "email": email, "phone": phone, "first_name": name}).encode()
    for t in transformers(CUSTOMERS, ring):
        out = decide(t, value, ring)
        try:
            expected = {"email": normalize_email(email), "phone": normalize_phone(phone, REGION), "first_name": name}
        except NormalizeError:
            assert out == NOT_NORMALIZABLE
            continue
        if not isinstance(out, bytes):
            assert out == PLAINTEXT_PII  # the name itself looks like an email or phone number
            continue
        record = json.loads(out)
        assert all(isinstance(record[f], str) and record[f].startswith("pf2.") for f in expected)
        plain = decrypt_record(record, CUSTOMERS, ring)
        assert {f: plain[f] for f in expected} == expected


def test_blind_indexes_through_a_dual_write_window(keyring_source) -> None:
    """`keys rotate --index`: `_bidx` keeps the old index key (readers and joins unchanged) and
    `_bidx_next` carries the new one, on both paths; after `--close-window` only the new one."""
    value = b'{"customer_id":"C1","email":"Anna@Example.com","phone":"+7 912 123-45-67"}'

    def outputs() -> list[dict]:
        ring = keyring_source.current()
        outs = [json.loads(decide(t, value, ring)) for t in transformers(CUSTOMERS, ring)]
        assert all(list(o) == list(outs[0]) for o in outs)  # same keys, same order
        return outs

    before = outputs()
    old = keyring_source.current().active_index
    assert all(o["email_bidx"].startswith(old + ".") and "email_bidx_next" not in o for o in before)
    keyring_source.rotate_index()
    new = keyring_source.current().active_index
    during = outputs()
    for o in during:
        assert o["email_bidx"] == before[0]["email_bidx"] and o["phone_bidx"] == before[0]["phone_bidx"]
        assert o["email_bidx_next"].startswith(new + ".") and o["phone_bidx_next"].startswith(new + ".")
    assert len({o["email_bidx_next"] for o in during}) == 1
    keyring_source.close_index_window()
    after = outputs()
    assert all(o["email_bidx"] == during[0]["email_bidx_next"] and "email_bidx_next" not in o for o in after)


def test_a_bidx_next_field_outside_a_window_is_read_as_text(ring: Keyring) -> None:
    value = b'{"customer_id":"C1","email":"a@b.co","email_bidx_next":"anna@example.com"}'
    assert reasons(CUSTOMERS, value, ring) == {PLAINTEXT_PII}
