"""The document fields each entity carries in its `_secure` record (the data contract), and how
RAW keeps them. Entity names, business keys and topics come from the pipeline config; this file
only knows the payload shape, which the config does not describe.

A field is `pii` when its RAW column holds a ciphertext (the PII policy encrypts it). Blind
indexes (`*_bidx`, HMACs) are not PII: they exist so analysts can count and join without
decrypting. The full `payload` column is PII as it embeds the ciphertexts.
"""

from __future__ import annotations

from dataclasses import dataclass

from fresh.errors import ConfigError

# kind -> (RAW column type, extraction from the JSON text in `payload`)
_KINDS = {
    "string": ("String", "JSONExtractString"),
    "int": ("Int64", "JSONExtractInt"),
    "float": ("Float64", "JSONExtractFloat"),
    # Money: RAW keeps a Float64 for convenience; MART reads the exact text (clickhouse/contract.py).
    "decimal": ("Float64", "JSONExtractFloat"),
    "json": ("String", "JSONExtractRaw"),  # nested objects and arrays kept as JSON text
}


@dataclass(frozen=True)
class Field:
    column: str
    path: tuple[str, ...]
    kind: str = "string"
    pii: bool = False

    @property
    def raw_type(self) -> str:
        return _KINDS[self.kind][0]

    def extract_from(self, parsed: str = "d", source: str = "payload") -> str:
        """From the parsed tuple `parsed` (see `payload_tuple_type`), or raw JSON text for "json"."""
        return self.extract(source) if self.kind == "json" else tuple_access(self.path, parsed)

    def extract(self, source: str = "payload") -> str:
        keys = ", ".join("'" + p + "'" for p in self.path)
        return f"{_KINDS[self.kind][1]}({source}, {keys})"


_META = (("_id", "String"), ("__op", "String"), ("__source_ts_ms", "Int64"), ("__deleted", "String"))


def payload_tuple_type(fields: list[Field]) -> str:
    """A named Tuple type for `JSONExtract(payload, ...)`: the payload is parsed once per row
    (one JSONExtract* call per field parses it once per field, about 3x slower). Fields of kind
    "json" are not in it (a Tuple element cannot keep raw JSON text); they use JSONExtractRaw."""
    tree: dict[str, object] = {}
    for f in fields:
        if f.kind == "json":
            continue
        node = tree
        for part in f.path[:-1]:
            node = node.setdefault(part, {})  # type: ignore[assignment]
        node[f.path[-1]] = f.raw_type
    for name, typ in _META:
        tree.setdefault(name, typ)

    def render(node: dict[str, object]) -> str:
        return "Tuple(" + ", ".join(
            f"{k} {render(v) if isinstance(v, dict) else v}" for k, v in node.items()
        ) + ")"

    return render(tree)


def tuple_access(path: tuple[str, ...], var: str = "d") -> str:
    expr = var
    for part in path:
        expr = f"tupleElement({expr}, '{part}')"
    return expr


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
        _f("first_name", pii=True), _f("last_name", pii=True), _f("email", pii=True), _f("email_bidx"),
        _f("phone", pii=True), _f("phone_bidx"), _f("birth_date", pii=True), _f("loyalty_status"),
        _f("home_store_id"), _f("registered_at", "int"), _f("updated_at", "int"),
    ],
    "purchases": [
        _f("store_id"), _f("customer_id"),
        _f("customer_email", pii=True, path=("customer", "email")),
        _f("customer_email_bidx", path=("customer", "email_bidx")),
        _f("customer_phone", pii=True, path=("customer", "phone")),
        _f("customer_phone_bidx", path=("customer", "phone_bidx")),
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
            f"entity {entity!r} has no ClickHouse field list; known: {known} (add it to clickhouse/fields.py)"
        ) from None
    return [_f(business_key), *(f for f in fields if f.column != business_key)]
