"""Policy cases shared by the transform tests: every action, records that exercise them, and the
reference path (`_apply` + `_guard`, rule by rule) the compiled and native paths must match."""

from __future__ import annotations

import json
from collections.abc import Callable

import orjson

from fresh.pipeline import Entity
from smt.envelope import is_envelope
from smt.keyring import Keyring
from smt.transform import RecordError, Transformer, _leaves, _mark, compile_rules, decrypt_record, record_id

ALL_ACTIONS = {
    "email": {"action": "encrypt", "blind_index": True, "normalize": "email"},
    "phone": {"action": "encrypt_deterministic", "blind_index": True, "normalize": "phone"},
    "alias": {"action": "keep", "blind_index": True},
    "ssn": "blind_index",
    "secret": "drop",
    "note": {"action": "encrypt", "nullable": True},
    "nick": {"action": "keep"},
    "contact.email": {"action": "encrypt_deterministic", "normalize": "email", "nullable": True, "blind_index": True},
    "rows[].phone": {"action": "encrypt", "normalize": "phone", "blind_index": True},
}
ALL_ACTIONS_RECORDS = [
    {"_id": "1", "email": " A@B.co ", "phone": "(212) 555-0147", "alias": "Xy Z", "ssn": "123", "secret": "s",
     "note": "n", "nick": "k", "contact": {"email": "Q@R.io"}, "rows": [{"phone": "+44 20 7946 0958"}, {"x": 1}]},
    {"_id": "2", "note": None, "contact": {"email": None}, "rows": []},
    {"_id": "3", "contact": None, "ssn": "", "phone": "+1-212-555-0147x123"},
    {"_id": "4", "email": "a@b.co", "note": 5},  # wrong type: both paths refuse alike
    {"_id": "5", "phone": "call me"},  # not normalizable
    {"_id": "6", "email": None},  # null, not nullable
    {"_id": "7", "contact": "c@d.co"},  # wrong parent type
    {"_id": "8", "nick": "n@m.co"},  # kept plaintext email: the email guard refuses it on both paths
]


def general_path(t: Transformer, value: bytes, ring: Keyring) -> bytes:
    """The rules applied one by one through `_apply` + `_guard`: the reference the compiled ops must match."""
    record = orjson.loads(value)
    t._record_id = record_id(record, t.entity).encode()
    written: dict[int, frozenset[str]] = {}
    for rule in t.rules:
        for node in _leaves(record, rule, strict=True):
            if rule.leaf in node:
                t._apply(node, rule, ring)
                t._guard(node, rule)
                _mark(written, node, rule.written)
    t._scan(record, written)
    return orjson.dumps(record)


def outcome(call: Callable[[], bytes | None], entity: Entity, ring: Keyring) -> tuple[str, str]:
    """Output with envelopes decrypted (randomized ciphertexts differ run to run), or the DLQ reason."""
    try:
        out = call()
    except RecordError as exc:
        return "dlq", exc.detail
    if out is None:
        return "tombstone", ""
    record = json.loads(out)
    assert_encrypted(record, entity)
    return "out", json.dumps(decrypt_record(record, entity, ring))


def assert_encrypted(record: dict, entity: Entity) -> None:
    """Every encrypted policy path present holds an envelope (or an allowed null): `decrypt_record`
    passes anything else through, so without this a plaintext left behind would compare equal."""
    for rule in compile_rules(entity):
        if not rule.encrypt:
            continue
        for node in _leaves(record, rule):
            if rule.leaf in node:
                value = node[rule.leaf]
                assert is_envelope(value) or (value is None and rule.field.nullable), (rule.path, "not an envelope")


