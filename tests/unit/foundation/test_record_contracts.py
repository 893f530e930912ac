"""Every producer and consumer of the two record contracts agrees with them: the generator's
documents carry the `_secure` contract's fields with its kinds; the PII processor, fed a CDC record
of such a document, writes exactly the `_secure` fields the contract lists (envelopes where it says
PII, blind indexes where it says `_bidx`); ClickHouse's ingest reads the contract's metadata and
key names; the ClickHouse test builders write the contract's shape."""

from __future__ import annotations

import json
from typing import Any

import pytest

from clickhouse.render import render_migrations
from fresh import cdc_record, secure_record
from fresh.pipeline import PipelineConfig
from generator.domain import Domain, Plan
from smt.envelope import is_envelope
from smt.guard import BIDX
from smt.keyring import KeyringSource
from smt.transform import Transformer
from tests import secure_records as builders

JSON_KINDS: dict[str, tuple[type, ...]] = {"string": (str,), "int": (int,), "float": (float, int),
                                           "decimal": (float, int), "json": (dict, list)}


def _at(doc: dict[str, Any], path: tuple[str, ...]) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _paths(doc: dict[str, Any], nested: set[str]) -> set[tuple[str, ...]]:
    """The top-level keys of `doc`, and one level down in the objects named in `nested`."""
    return {(k, kk) for k in nested if isinstance(doc.get(k), dict) for kk in doc[k]} | {
        (k,) for k in doc if k not in nested}


def _contract_paths(entity: str, business_key: str) -> set[tuple[str, ...]]:
    return {f.path for f in secure_record.fields_for(entity, business_key)} | {(secure_record.DOC_ID,)}


@pytest.mark.parametrize("entity", ["stores", "products", "customers", "purchases"])
def test_processor_output_of_generator_documents_is_the_secure_contract(
    pipeline: PipelineConfig, keyring_source: KeyringSource, entity: str
) -> None:
    e = pipeline.entity(entity)
    ring = keyring_source.current()
    transform = Transformer(e, pipeline.pii_processor.default_region, pipeline.pii_processor.max_record_bytes)
    domain = Domain(Plan(seed=42))
    fields = secure_record.fields_for(entity, e.business_key)
    nested = {f.path[0] for f in fields if len(f.path) > 1}
    for i in range(20):
        doc = cdc_record.from_document(domain.build(entity, i))
        out = transform(cdc_record.value(doc, "c", 1_700_000_000_000 + i), ring)
        assert out is not None
        secure = json.loads(out)
        meta = {k: secure.pop(k) for k in cdc_record.META_FIELDS}
        assert meta == {cdc_record.DELETED: False, cdc_record.OP: "c", cdc_record.SOURCE_TS_MS: 1_700_000_000_000 + i}
        assert _paths(secure, nested) == _contract_paths(entity, e.business_key), (entity, i)
        for f in fields:
            value = _at(secure, f.path)
            if f.pii:
                assert is_envelope(value), (entity, f.column)
            elif f.column.endswith(secure_record.BIDX_SUFFIX):
                assert BIDX.fullmatch(value), (entity, f.column)
            else:
                assert isinstance(value, JSON_KINDS[f.kind]), (entity, f.column, value)


def test_pii_fields_are_what_the_policy_encrypts(pipeline: PipelineConfig) -> None:
    for name, e in pipeline.entities.items():
        fields = {f.path: f for f in secure_record.fields_for(name, e.business_key)}
        encrypted = {tuple(p.split(".")) for p, f in (e.pii or {}).items() if f.action.startswith("encrypt")}
        assert {p for p, f in fields.items() if f.pii} == encrypted, name
        indexed = {(*p[:-1], p[-1] + secure_record.BIDX_SUFFIX) for p in
                   (tuple(k.split(".")) for k, f in (e.pii or {}).items() if f.blind_index)}
        assert {p for p in fields if p[-1].endswith(secure_record.BIDX_SUFFIX)} == indexed, name


def test_clickhouse_reads_the_contracts_names(pipeline: PipelineConfig) -> None:
    ingest = "\n".join(m.sql for m in render_migrations(pipeline, "b:9092") if m.name in ("006_kafka_ingest",
                                                                                           "008_exact_mart"))
    for name in secure_record.META_FIELDS:
        assert f"tupleElement(d, '{name}')" in ingest, name
    assert f"JSONExtractString(_key, '{secure_record.KEY_ID}')" in ingest


def test_clickhouse_test_builders_write_the_contract(pipeline: PipelineConfig) -> None:
    made = {"stores": builders.store("S001", 1), "products": builders.product("P001", 1),
            "customers": builders.customer("C000001", 1), "purchases": builders.purchase("T00000001", 1)}
    for name, doc in made.items():
        e = pipeline.entity(name)
        nested = {f.path[0] for f in secure_record.fields_for(name, e.business_key) if len(f.path) > 1}
        body = {k: v for k, v in doc.items() if k not in cdc_record.META_FIELDS}
        assert _paths(body, nested) == _contract_paths(name, e.business_key), name
    assert builders.message_key("C1") == cdc_record.key("C1")
