"""The `_secure` record contract: what the PII processor (smt/) writes to `<cdc topic>_secure` and
ClickHouse (clickhouse/) reads. Defined here once; the test builders (tests/secure_records.py)
write it.

    key     the CDC record's key, unchanged: {"id":"<_id>"} (fresh/cdc_record.py)
    value   the CDC record's value with the entity's PII policy applied: an encrypted field holds
            an envelope (`pf2.<key id>.<g|s>.<base64url>`, smt/envelope.py), a blind-indexed one
            adds `<leaf>_bidx` (`<index key id>.<hex HMAC-SHA256>`, smt/guard.py; in a key
            rotation's dual-write window also `<leaf>_bidx_next`), a dropped one is absent. The
            metadata fields (`__deleted`, `__op`, `__source_ts_ms`) and deletes and tombstones
            pass through as they are.
    bytes   compact UTF-8 JSON, as the CDC record's.

`ENTITY_FIELDS`: the payload fields each entity's `_secure` record carries, which ClickHouse
reads into RAW (clickhouse/fields.py says how). Entity names, business keys and topics come from
the pipeline config; the payload shape is not in it. A field is `pii` when it holds a ciphertext
(the policy encrypts it); blind indexes are not PII: analysts count and join on them without
decrypting.
"""

from __future__ import annotations

from dataclasses import dataclass

from fresh.cdc_record import DELETED, DOC_ID, KEY_ID, OP, SOURCE_TS_MS, encode, key
from fresh.errors import ConfigError

__all__ = ["BIDX_NEXT_SUFFIX", "BIDX_SUFFIX", "DELETED", "DOC_ID", "ENTITY_FIELDS", "KEY_ID", "KINDS", "META_FIELDS",
           "OP", "SOURCE_TS_MS", "Field", "encode", "fields_for", "key"]

BIDX_SUFFIX = "_bidx"  # `<leaf>_bidx`: the blind index of `<leaf>`
BIDX_NEXT_SUFFIX = "_bidx_next"  # `<leaf>_bidx_next`: the new index key's, in a dual-write window
# Top-level keys every record has besides the payload fields (a rewritten delete has no _id:
# readers take it from the key's `id`).
META_FIELDS = (DOC_ID, OP, SOURCE_TS_MS, DELETED)

# The JSON value of a payload field: string, integer, floating-point number, money (a number with
# at most 2 decimals, read exactly from the text), or nested JSON (an object or an array).
KINDS = ("string", "int", "float", "decimal", "json")


@dataclass(frozen=True)
class Field:
    column: str
    path: tuple[str, ...]
    kind: str = "string"
    pii: bool = False


def _f(column: str, kind: str = "string", pii: bool = False, path: tuple[str, ...] | None = None) -> Field:
    return Field(column, path or (column,), kind, pii)


ENTITY_FIELDS: dict[str, list[Field]] = {
    "stores": [
        _f("name"), _f("network"), _f("city"), _f("address"), _f("opening_hours", "json"),
        _f("manager", pii=True), _f("created_at", "int"),
    ],
    "products": [
        _f("name"), _f("category"), _f("price", "decimal"), _f("unit"), _f("manufacturer"),
        _f("shelf_life_days", "int"), _f("nutrition", "json"), _f("updated_at", "int"),
    ],
    "customers": [
        _f("first_name", pii=True), _f("last_name", pii=True), _f("email", pii=True), _f("email" + BIDX_SUFFIX),
        _f("phone", pii=True), _f("phone" + BIDX_SUFFIX), _f("birth_date", pii=True), _f("loyalty_status"),
        _f("home_store_id"), _f("registered_at", "int"), _f("updated_at", "int"),
    ],
    "purchases": [
        _f("store_id"), _f("customer_id"),
        _f("customer_email", pii=True, path=("customer", "email")),
        _f("customer_email" + BIDX_SUFFIX, path=("customer", "email" + BIDX_SUFFIX)),
        _f("customer_phone", pii=True, path=("customer", "phone")),
        _f("customer_phone" + BIDX_SUFFIX, path=("customer", "phone" + BIDX_SUFFIX)),
        _f("items", "json"), _f("total", "decimal"), _f("payment_method"), _f("status"),
        _f("purchased_at", "int"), _f("updated_at", "int"),
    ],
}


def fields_for(entity: str, business_key: str) -> list[Field]:
    """The payload fields of `entity`, business key first."""
    try:
        fields = ENTITY_FIELDS[entity]
    except KeyError:
        known = ", ".join(sorted(ENTITY_FIELDS))
        raise ConfigError(
            f"entity {entity!r} has no `_secure` field list; known: {known} (add it to fresh/secure_record.py)"
        ) from None
    return [_f(business_key), *(f for f in fields if f.column != business_key)]
