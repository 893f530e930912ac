"""How RAW keeps the payload fields of each entity's `_secure` record. Which fields a record
carries, their JSON kinds and which are PII is the `_secure` record contract
(fresh/secure_record.py); this file only maps it to ClickHouse column types and extractions.
"""

from __future__ import annotations

from dataclasses import dataclass

from fresh import secure_record

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
class Field(secure_record.Field):
    """A contract field with its RAW column type and extraction."""

    @property
    def raw_type(self) -> str:
        return _KINDS[self.kind][0]

    def extract_from(self, parsed: str = "d", source: str = "payload") -> str:
        """From the parsed tuple `parsed` (see `payload_tuple_type`), or raw JSON text for "json"."""
        return self.extract(source) if self.kind == "json" else tuple_access(self.path, parsed)

    def extract(self, source: str = "payload") -> str:
        keys = ", ".join("'" + p + "'" for p in self.path)
        return f"{_KINDS[self.kind][1]}({source}, {keys})"


_META = tuple(zip(secure_record.META_FIELDS, ("String", "String", "Int64", "String"), strict=True))


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


def fields_for(entity: str, business_key: str) -> list[Field]:
    """The payload fields of `entity` (fresh/secure_record.py), business key first."""
    return [Field(f.column, f.path, f.kind, f.pii) for f in secure_record.fields_for(entity, business_key)]
