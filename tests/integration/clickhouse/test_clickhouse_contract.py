"""ClickHouse is strict with what the `_secure` topics carry, on the real broker and the embedded
engine: money lands in MART exactly as written in the JSON text (whether the processor wrote
2.50 or 2.5), a record MART cannot hold exactly goes to `rejects` with the reason, an
unparseable one to `kafka_errors`, a new or retyped MongoDB field flows into RAW without stopping
anything, and `verify`'s counts (clickhouse.quality) show each. Records are written as raw JSON
text, so the exact bytes a processor path would produce are what the engine reads.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clickhouse.backend import ChdbBackend
from clickhouse.migrate import migrate
from clickhouse.quality import layer_counts, validation_summary
from clickhouse.render import MIGRATIONS_DIR, render_migrations
from fresh.pipeline import PipelineConfig
from fresh.settings import Settings
from fresh.wait import wait_until
from stack.kafka_security import engine_connection
from tests import secure_records as sr

T0 = 1_763_000_000_000
HUGE = "9" * 400  # a number no parser here holds: the whole payload reads as not the contract's shape


def _text(doc: dict[str, Any], **raw: str) -> bytes:
    """`doc` as JSON with some values replaced by raw JSON text (e.g. price='2.50')."""
    marked = {**doc, **{k: f"@@{k}@@" for k in raw}}
    text = json.dumps(marked)
    for k, v in raw.items():
        text = text.replace(f'"@@{k}@@"', v)
    return text.encode()


@dataclass
class Landed:
    cfg: PipelineConfig
    backend: ChdbBackend

    def rows(self, sql: str) -> list[dict]:
        names = self.cfg.clickhouse
        return self.backend.query(sql.format(raw=names.raw_database, mart=names.mart_database))

    def rejects(self, entity: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for r in self.rows(f"SELECT business_id, rule FROM {{mart}}.rejects WHERE entity = '{entity}' "
                           "ORDER BY business_id, rule"):
            out.setdefault(r["business_id"], []).append(r["rule"])
        return out


@pytest.fixture(scope="module")
def landed(chdb_backend: ChdbBackend, pipeline: PipelineConfig, settings: Settings,
           make_unique_config: Callable[[PipelineConfig, str], PipelineConfig], new_tag: Callable[[], str]) -> Landed:
    cfg = make_unique_config(pipeline, new_tag())
    migrate(chdb_backend, render_migrations(cfg, engine_connection(settings, cfg)), cfg.clickhouse.raw_database)
    topic = {name: e.secure_topic for name, e in cfg.entities.items()}
    p = sr.SecureProducer(settings.kafka("admin"))

    def send(entity: str, doc: dict[str, Any], **raw: str) -> None:
        p.send_raw(topic[entity], _text(doc, **raw), key=sr.message_key(doc["_id"]))

    product = sr.product("P000", T0)
    # Exact decimals: as the native path writes them (verbatim text) and as the Python path does.
    send("products", dict(product, _id="P001", product_id="P001"), price="64.46")
    send("products", dict(product, _id="P002", product_id="P002"), price="2.50")  # native path
    send("products", dict(product, _id="P003", product_id="P003"), price="2.5")  # Python path (orjson)
    send("products", dict(product, _id="P004", product_id="P004"), price="1.15e2")
    # Bad input, each a reason in rejects; the rows around them land.
    send("products", dict(product, _id="P010", product_id="P010", price="64.46"))  # a string: wrong type
    send("products", dict(product, _id="P011", product_id="P011"), price="1e30")  # huge
    send("products", dict(product, _id="P012", product_id="P012"), price="64.456")  # not 2 decimals
    send("products", {k: v for k, v in dict(product, _id="P013", product_id="P013").items() if k != "unit"})
    send("products", dict(product, _id="P014", product_id="P014"), shelf_life_days="14.5")  # wrong type
    send("products", dict(product, _id="P015", product_id="P015"), updated_at="99999999999999999999")  # > Int64
    send("products", dict(product, _id="P017", product_id="P017"), shelf_life_days=HUGE)
    send("products", dict(product, _id="P016", product_id="P016", name=["not", "a", "string"]))
    # Schema change in MongoDB: a new field on some documents; MART keeps the row, RAW the field.
    send("products", dict(product, _id="P020", product_id="P020", organic=True), price="10.10")
    p.send_raw(topic["products"], b'{"_id": "P030", "price": ', key=sr.message_key("P030"))  # not JSON
    p.send_raw(topic["products"], b"[1, 2, 3]", key=sr.message_key("P031"))  # JSON, not an object: an error too
    send("products", dict(product, _id="P099", product_id="P099"), price="0.29")  # after all of it

    purchase = sr.purchase("T0", T0 + 1, items=[("P001", "dairy", 1, 64.46), ("P002", "dairy", 3, 2.5)])
    purchase["total"] = 71.96
    good = _text(dict(purchase, _id="T001", purchase_id="T001"), total="71.96")
    good = good.replace(b'"unit_price": 2.5', b'"unit_price": 2.50')  # as the native path copies it
    good = good.replace(b'"line_total": 7.5', b'"line_total": 7.50')
    p.send_raw(topic["purchases"], good, key=sr.message_key("T001"))
    bad_line = dict(purchase, _id="T002", purchase_id="T002",
                    items=[dict(purchase["items"][0], unit_price="64.46"), purchase["items"][1]])
    send("purchases", bad_line)
    send("purchases", {k: v for k, v in dict(purchase, _id="T003", purchase_id="T003").items() if k != "customer"})
    send("purchases", dict(purchase, _id="T004", purchase_id="T004", items={"not": "a list"}))
    p.flush()

    landed = Landed(cfg, chdb_backend)
    expected = {"products": 14, "purchases": 4}

    def all_in() -> bool:
        layers = [r for r in layer_counts(chdb_backend, cfg) if r["raw_rows"]]
        counts = {r["entity"]: r["raw_rows"] for r in layers}
        # MART and rejects are written after RAW (its views): wait until every RAW row is in one
        settled = {r["entity"]: r["mart_current"] + r["rejected_messages"] for r in layers}
        errors = int(landed.rows("SELECT count() AS n FROM {raw}.kafka_errors")[0]["n"])
        if counts != expected or settled != expected or errors != 2:  # raised: the timeout names what is there
            raise AssertionError(f"RAW rows {counts}, MART + rejected {settled}, {errors} broken message(s)")
        return True

    wait_until(all_in, timeout_s=120, what=f"RAW rows {expected} and the broken messages in kafka_errors")
    return landed


def test_mart_money_equals_the_json_text(landed: Landed) -> None:
    prices = {r["product_id"]: str(r["price"]) for r in landed.rows(
        "SELECT product_id, toString(price) AS price FROM {mart}.products FINAL ORDER BY product_id")}
    assert prices == {"P001": "64.46", "P002": "2.5", "P003": "2.5", "P004": "115", "P020": "10.1", "P099": "0.29"}
    rows = landed.rows("SELECT toString(total) AS total, arrayMap(x -> toString(x), item_unit_price) AS unit, "
                       "arrayMap(x -> toString(x), item_line_total) AS line FROM {mart}.purchases FINAL")
    assert rows == [{"total": "71.96", "unit": ["64.46", "2.5"], "line": ["64.46", "7.5"]}]


def test_records_mart_cannot_hold_are_rejected_with_a_reason(landed: Landed) -> None:
    rejects = landed.rejects("products")
    assert rejects == {
        "P010": ["bad_decimal:price", "wrong_type:price"],
        "P011": ["bad_decimal:price"],
        "P012": ["bad_decimal:price"],
        "P013": ["missing_field:unit"],
        "P014": ["wrong_type:shelf_life_days"],
        "P015": rejects["P015"],
        "P016": ["wrong_type:name"],
        "P017": rejects["P017"],
    }
    # numbers past 64 bits: the JSON parser gives up on the whole payload, every field reads as missing
    assert "missing_source_ts" in rejects["P015"] and "missing_source_ts" in rejects["P017"]
    purchases = landed.rejects("purchases")
    assert set(purchases) == {"T002", "T003", "T004"}
    assert "wrong_type:items.unit_price" in purchases["T002"] and "bad_decimal:items.unit_price" in purchases["T002"]
    assert purchases["T003"] == ["missing_field:customer"]
    assert "wrong_type:items" in purchases["T004"]


def test_unparseable_messages_land_in_kafka_errors(landed: Landed) -> None:
    errors = landed.rows("SELECT raw_message, error FROM {raw}.kafka_errors WHERE entity = 'products'")
    assert sorted(e["raw_message"] for e in errors if e["error"]) == ['[1, 2, 3]', '{"_id": "P030", "price": ']


def test_a_new_or_retyped_field_flows_into_raw_and_is_flagged(landed: Landed) -> None:
    raw = landed.rows("SELECT product_id, payload FROM {raw}.products WHERE product_id IN ('P010', 'P020') "
                      "ORDER BY product_id")
    assert '"price": "64.46"' in raw[0]["payload"] and '"organic": true' in raw[1]["payload"]
    drift = landed.rows("SELECT business_id, key, json_type FROM {mart}.schema_drift WHERE entity = 'products'")
    assert drift == [{"business_id": "P020", "key": "organic", "json_type": "Bool"}]
    assert landed.rows("SELECT count() AS n FROM {mart}.products FINAL WHERE product_id = 'P020'")[0]["n"] == 1


def test_verify_counts_every_kind_of_bad_input(landed: Landed) -> None:
    counts = {r["entity"]: r for r in layer_counts(landed.backend, landed.cfg)}
    products = counts["products"]
    # 16 messages: 14 RAW rows (6 in MART + 8 rejected) and 2 in kafka_errors
    assert products["raw_rows"] == 14 and products["mart_current"] == 6
    assert products["rejected_messages"] == 8 and products["errors"] == 2 and products["drift_fields"] == 1
    summary = {(r["entity"], r["rule"], r["action"]): int(r["rows"])
               for r in validation_summary(landed.backend, landed.cfg)}
    assert summary[("products", "bad_decimal:price", "rejected")] == 3
    assert summary[("products", "unexpected_field:organic", "flagged")] == 1
    assert summary[("purchases", "missing_field:customer", "rejected")] == 1


def test_migration_008_recomputes_mart_of_an_existing_warehouse(
    chdb_backend: ChdbBackend, pipeline: PipelineConfig, settings: Settings, tmp_path: Path,
    make_unique_config: Callable[[PipelineConfig, str], PipelineConfig], new_tag: Callable[[], str],
) -> None:
    """A warehouse migrated before 008 holds 64.45 for 64.46 (the float path); `migrate` then
    applies 008, which recomputes MART from RAW: exact, with the ledger's rules kept."""
    cfg = make_unique_config(pipeline, new_tag())
    before = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, before)
    for later in before.glob("*.sql.j2"):
        if later.name >= "008":
            later.unlink()
    migrate(chdb_backend, render_migrations(cfg, engine_connection(settings, cfg), directory=before),
            cfg.clickhouse.raw_database)
    p = sr.SecureProducer(settings.kafka("admin"))
    p.send_raw(cfg.entity("products").secure_topic, _text(sr.product("P001", T0), price="64.46"),
               key=sr.message_key("P001"))
    p.flush()
    mart = cfg.clickhouse.mart_database

    def price() -> str | None:
        rows = chdb_backend.query(f"SELECT toString(price) AS p FROM {mart}.products FINAL")
        return str(rows[0]["p"]) if rows else None

    wait_until(lambda: price() is not None, timeout_s=90, what="the product in MART before 008")
    assert price() == "64.45"  # what 003's float path made of 64.46
    done = migrate(chdb_backend, render_migrations(cfg, engine_connection(settings, cfg)), cfg.clickhouse.raw_database)
    assert done[0].name == "008_exact_mart"  # and the later migrations
    assert price() == "64.46"
    # ... and the re-attached Kafka table streams through the new views
    p.send_raw(cfg.entity("products").secure_topic, _text(sr.product("P002", T0), price="64.46"),
               key=sr.message_key("P002"))
    p.flush()
    wait_until(lambda: chdb_backend.query(f"SELECT count() AS n FROM {mart}.products FINAL")[0]["n"] == 2,
               timeout_s=90, what="the second product in MART after 008")
    rows = chdb_backend.query(f"SELECT toString(price) AS p FROM {mart}.products FINAL WHERE product_id = 'P002'")
    assert rows == [{"p": "64.46"}]
