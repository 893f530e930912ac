"""MART's strict reading of a `_secure` payload: exact decimals from the JSON text and the
contract checks (types, presence, ranges) that keep a row whose value MART cannot hold exactly
out of MART, in `<mart>.rejects` with a reason, instead of a silent default.

Why the text: ClickHouse's JSON functions parse every number into a double, and even
`JSONExtractRaw` re-serializes it from the double (2.50 -> '2.5', 12345678901234.567 ->
'...566'); `toDecimal64(round(price, 2), 2)` truncated 64.46 to 64.45. So a decimal field is
read from the payload's text by a regular expression anchored on its key (`[{,]` before the
quote: a quoted key inside a JSON string is always escaped, so it cannot match there) and
converted with `toDecimal64OrZero(text, 2)`. The regex finds the key at any depth, so a guard
compares (as decimals) the number it found with the one the JSON parser found at the field's
real place: if they differ, or the text does not fit `Decimal(12, 2)` exactly (more than 2
decimals, 10^10 or more, not a number), the row is rejected as `bad_decimal:<field>`.

Type checks read one parse of the payload (`JSONExtractKeysAndValuesRaw`, top level; its values
are re-serialized but keep their JSON type) and reject `missing_field:<field>` (key absent) or
`wrong_type:<field>` (present with another JSON type; `null` is accepted for strings and JSON
objects and reads as ''). Only rows that are not deletes are checked. Migration 008 adds these
rules to RAW's `broken_rules`, next to the rules of clickhouse/rules.py (key, version, values),
so they are evaluated once per row at RAW ingest.

A top-level key the contract does not know is not a reason to reject (a new MongoDB field must
not stop anything): MART ignores it, RAW keeps it in `payload`, `<mart>.schema_drift` lists it.
"""

from __future__ import annotations

from clickhouse.fields import fields_for
from fresh import secure_record

DECIMAL_SCALE = 2
DECIMAL_LIMIT = "10000000000"  # 10^10: Decimal(12, 2) holds 10 integer digits
_NUMBER = r"-?[0-9][0-9.eE+-]*"
# Top-level keys that are not payload fields but always present (Debezium's added fields).
META_KEYS = secure_record.META_FIELDS

# JSON fields that hold a list (the other "json" fields hold an object).
ARRAY_FIELDS = ("items",)
# Decimal fields inside the purchase lines (`items`), read the same way from the payload text.
ITEM_DECIMALS = ("unit_price", "line_total")
# The purchase line's other fields and their kinds, for the type checks.
ITEM_FIELDS = {"product_id": "string", "name": "string", "category": "string", "quantity": "int",
               "unit_price": "decimal", "line_total": "decimal"}


def _key_regex(key: str) -> str:
    # A SQL string literal holding the regex; backslashes doubled for the SQL string.
    return "'[{,]\\\\s*\"" + key + "\"\\\\s*:\\\\s*(" + _NUMBER.replace("\\", "\\\\") + ")'"


def decimal_text(key: str, source: str = "payload") -> str:
    """The first number written under `key` in the JSON text, as text ('' when none)."""
    return f"extract({source}, {_key_regex(key)})"


def decimal_texts(key: str, source: str = "payload") -> str:
    """Every number written under `key` in the JSON text, in document order."""
    return f"extractAll({source}, {_key_regex(key)})"


def exact_decimal(text: str) -> str:
    """Text -> Decimal, never through a float; 0 where the text is not a decimal (rejected)."""
    return f"toDecimal64OrZero({text}, {DECIMAL_SCALE})"


def _and(*conds: str) -> str:
    """All of `conds`, every one evaluated: ClickHouse's AND and OR skip their later arguments
    (short-circuit), which makes it compute a shared subexpression (the parsed payload, the
    purchase lines) once per use instead of once per block (measured: the purchases contract
    4-5x slower with AND; see rules.py for the same effect)."""
    out = conds[-1]
    for c in reversed(conds[:-1]):
        out = f"bitAnd({c}, {out})"
    return out


def _or(*conds: str) -> str:
    out = conds[-1]
    for c in reversed(conds[:-1]):
        out = f"bitOr({c}, {out})"
    return out


def decimal_fits(text: str) -> str:
    """True when `text` is a JSON number that Decimal(12, 2) holds exactly."""
    wide = f"toDecimal128OrNull({text}, 8)"
    return _and(f"match({text}, '^{_NUMBER.replace(chr(92), chr(92) * 2)}$')",
                f"isNotNull(toDecimal128OrNull({text}, {DECIMAL_SCALE}))",
                f"ifNull({wide} = toDecimal128OrNull({text}, {DECIMAL_SCALE}), 0)",
                f"ifNull(abs({wide}) < {DECIMAL_LIMIT}, 0)")


def _same_number(text: str, raw: str) -> str:
    """The number the regex found equals the one the JSON parser found (`raw`, re-serialized from
    a double), compared as decimals (ClickHouse's float parser misreads '1.15e2' as 114.99...)."""
    return f"ifNull(toDecimal128OrNull({text}, 8) = toDecimal128OrNull({raw}, 8), 0)"


def _type_ok(kind: str, raw: str) -> str:
    """Condition over the re-serialized raw value `raw` (never '')."""
    if kind == "string":
        return _or(f"startsWith({raw}, '\"')", f"{raw} = 'null'")
    if kind == "array":
        return f"startsWith({raw}, '[')"
    if kind == "json":
        return _or(f"startsWith({raw}, '{{')", f"{raw} = 'null'")
    if kind == "int":
        return f"isNotNull(toInt64OrNull({raw}))"
    # float and decimal: a JSON number
    return f"isNotNull(toFloat64OrNull({raw}))"


def contract_rules_sql(entity: str, business_key: str, kv: str = "kv") -> str:
    """An Array(String) expression of the contract rules a RAW row breaks (empty when clean).
    `kv` is the payload's top level as Map(String, String) (see `kv_sql`); the RAW columns
    (`price`, `total`, `items`, `deleted`) are in scope."""
    checks: list[tuple[str, str]] = []
    top: dict[str, str] = {}
    for f in fields_for(entity, business_key):
        if f.column == business_key:
            continue  # missing_business_key (rules.py) covers it; its value falls back to _id
        kind = "array" if f.column in ARRAY_FIELDS else f.kind
        top.setdefault(f.path[0], "json" if len(f.path) > 1 else kind)
    for key, kind in top.items():
        raw = f"{kv}['{key}']"
        checks.append((f"missing_field:{key}", f"NOT mapContains({kv}, '{key}')"))
        checks.append((f"wrong_type:{key}", _and(f"mapContains({kv}, '{key}')", f"NOT {_type_ok(kind, raw)}")))
        if kind == "decimal":
            text = decimal_text(key)
            checks.append((f"bad_decimal:{key}", _and(f"mapContains({kv}, '{key}')",
                                                      f"NOT {_and(decimal_fits(text), _same_number(text, raw))}")))
    if entity == "purchases":
        lines = f"arrayMap(x -> CAST(JSONExtractKeysAndValuesRaw(x) AS Map(String, String)), " \
                f"JSONExtractArrayRaw({kv}['items']))"
        for key, kind in ITEM_FIELDS.items():
            ok = _type_ok(kind, "m['" + key + "']")
            checks.append((f"wrong_type:items.{key}",
                           f"arrayExists(m -> NOT {_and(f'mapContains(m, {chr(39)}{key}{chr(39)})', ok)}, {lines})"))
        for key in ITEM_DECIMALS:
            texts = decimal_texts(key)
            same = _same_number("t", "m['" + key + "']")
            checks.append((f"bad_decimal:items.{key}", "NOT " + _and(
                f"length({texts}) = length({lines})",
                f"arrayAll(t -> {decimal_fits('t')}, {texts})",
                # arrayAll over two arrays needs equal lengths: compare the shorter prefix
                f"arrayAll((t, m) -> {same}, arrayResize({texts}, length({lines})), {lines})")))
    parts = ", ".join(f"if(bitAnd(deleted = 0, {cond}), '{name}', '')" for name, cond in checks)
    return f"arrayFilter(r -> r != '', [{parts}])"


def kv_sql(source: str = "payload") -> str:
    """The payload's top level as Map(String, String) of raw (re-serialized) values: one parse."""
    return f"CAST(JSONExtractKeysAndValuesRaw({source}) AS Map(String, String))"


def known_keys(entity: str, business_key: str) -> list[str]:
    """Top-level payload keys the contract knows (the rest is schema drift)."""
    keys = [f.path[0] for f in fields_for(entity, business_key)]
    return list(dict.fromkeys([*keys, *META_KEYS]))
