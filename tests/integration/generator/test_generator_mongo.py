"""The generator against the local stack's MongoDB server (mongo-java-server, a wire-protocol
emulator with our change-stream layer, not mongod): counts, idempotence, referential integrity,
scale, change mode and the CLI."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bson import json_util
from click.testing import CliRunner
from pymongo.database import Database

from fresh.pipeline import PipelineConfig
from freshctl.cli import freshctl
from generator.changes import KINDS, ChangeRunner, planned_counts
from generator.domain import LOYALTY_TIERS, NETWORK_ALMOST, NETWORK_MAYBE, Domain, Plan
from generator.seed import ENTITIES, MongoSink, seed

Db = Database[dict[str, Any]]


def _seed(db: Db, pipeline: PipelineConfig, plan: Plan, batch_size: int = 500) -> MongoSink:
    sink = MongoSink(db, pipeline)
    sink.ensure_indexes()
    seed(Domain(plan), [sink], batch_size=batch_size)
    return sink


def _counts(db: Db, pipeline: PipelineConfig) -> dict[str, int]:
    return {e: db[pipeline.entity(e).collection].count_documents({}) for e in ENTITIES}


def _assert_integrity(db: Db, pipeline: PipelineConfig, *, seeded_prices: bool = True) -> None:
    col = {e: db[pipeline.entity(e).collection] for e in ENTITIES}
    stores = {d["_id"] for d in col["stores"].find({}, {"_id": 1})}
    products = {d["_id"]: d["price"] for d in col["products"].find({}, {"price": 1})}
    customers = {d["_id"]: (d["email"], d["phone"], d["home_store_id"])
                 for d in col["customers"].find({}, {"email": 1, "phone": 1, "home_store_id": 1})}
    assert {home for _, _, home in customers.values()} == stores  # every store has a customer
    n = 0
    for p in col["purchases"].find({}):
        n += 1
        assert p["store_id"] in stores, p["_id"]
        email, phone, _ = customers[p["customer_id"]]
        assert p["customer"] == {"email": email, "phone": phone}
        for item in p["items"]:
            assert item["product_id"] in products
            # after price changes, older purchases keep the price they were paid at
            assert not seeded_prices or item["unit_price"] == products[item["product_id"]], (p["_id"], item)
        assert p["total"] == round(sum(i["line_total"] for i in p["items"]), 2)
    assert n == _counts(db, pipeline)["purchases"]


def test_default_seed_gives_exact_counts(seed_db: Db, pipeline: PipelineConfig) -> None:
    _seed(seed_db, pipeline, Plan(seed=42))
    assert _counts(seed_db, pipeline) == {"stores": 45, "products": 100, "customers": 175, "purchases": 1000}
    networks = Counter(d["network"] for d in seed_db[pipeline.entity("stores").collection].find())
    assert networks == {NETWORK_ALMOST: 30, NETWORK_MAYBE: 15}
    categories = Counter(d["category"] for d in seed_db[pipeline.entity("products").collection].find())
    assert sorted(categories.values()) == [20] * 5
    for e in ENTITIES:
        key = pipeline.entity(e).business_key
        info = seed_db[pipeline.entity(e).collection].index_information()
        assert info[f"{key}_unique"]["unique"] is True and info[f"{key}_unique"]["key"] == [(key, 1)]


def test_same_seed_twice_same_documents_no_duplicates(seed_db: Db, pipeline: PipelineConfig) -> None:
    plan = Plan(seed=9)
    first = _seed(seed_db, pipeline, plan)
    assert first.totals["purchases"].upserted == 1000
    second = _seed(seed_db, pipeline, plan, batch_size=123)  # indexes again: idempotent
    assert second.totals["purchases"].upserted == 0 and second.totals["purchases"].modified == 0
    assert second.totals["purchases"].matched == 1000
    assert _counts(seed_db, pipeline) == plan.counts
    domain = Domain(plan)
    for e in ENTITIES:
        stored = list(seed_db[pipeline.entity(e).collection].find({}).sort("_id", 1))
        assert stored == list(domain.stream(e)), e


def test_purchases_reference_existing_documents(seed_db: Db, pipeline: PipelineConfig) -> None:
    _seed(seed_db, pipeline, Plan(seed=1))
    _assert_integrity(seed_db, pipeline)


def test_scale_10_keeps_integrity(seed_db: Db, pipeline: PipelineConfig) -> None:
    plan = Plan(seed=2, scale=10)
    _seed(seed_db, pipeline, plan, batch_size=2000)
    assert _counts(seed_db, pipeline) == {"stores": 45, "products": 100, "customers": 1750, "purchases": 10000}
    _assert_integrity(seed_db, pipeline)


def test_change_mode_performs_each_kind(seed_db: Db, pipeline: PipelineConfig) -> None:
    plan = Plan(seed=4)
    _seed(seed_db, pipeline, plan)
    customers = seed_db[pipeline.entity("customers").collection]
    products = seed_db[pipeline.entity("products").collection]

    def tier_sum() -> int:
        return sum(LOYALTY_TIERS.index(c["loyalty_status"]) for c in customers.find({}, {"loyalty_status": 1}))

    tiers_before = tier_sum()
    started = datetime.now(UTC).replace(microsecond=0)
    report = ChangeRunner(seed_db, pipeline, Domain(plan)).run(47, rate=0)
    expected = planned_counts(47)
    assert report.counts == expected and all(expected[k] > 0 for k in KINDS)
    counts = _counts(seed_db, pipeline)
    assert counts["purchases"] == 1000 + expected["insert_purchase"] - expected["delete_purchase"]
    assert tier_sum() == tiers_before + expected["update_customer_loyalty"]  # one tier up each
    assert 1 <= products.count_documents({"updated_at": {"$gte": started}}) <= expected["update_product_price"]
    changed = seed_db[pipeline.entity("purchases").collection].count_documents(
        {"updated_at": {"$gte": started}, "status": {"$ne": "completed"}})
    assert 1 <= changed <= expected["update_purchase_status"]
    # a second run continues after the purchases already there instead of overwriting them
    again = ChangeRunner(seed_db, pipeline, Domain(plan)).run(10, rate=0)
    assert again.counts == planned_counts(10)
    assert _counts(seed_db, pipeline)["purchases"] == counts["purchases"] + 3 - 1
    _assert_integrity(seed_db, pipeline, seeded_prices=False)


def test_cli_seed_export_and_changes(seed_db: Db, pipeline: PipelineConfig, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(freshctl, ["seed", "--seed", "3", "--database", seed_db.name, "--batch-size", "250",
                                      "--export", str(tmp_path), "-o", "json"])
    assert result.exit_code == 0, result.output
    assert _counts(seed_db, pipeline) == Plan(seed=3).counts
    read = json_util.RELAXED_JSON_OPTIONS.with_options(tz_aware=True, tzinfo=UTC)
    for e in ENTITIES:
        path = tmp_path / f"{pipeline.entity(e).collection}.jsonl"
        exported = [json_util.loads(line, json_options=read) for line in path.read_text(encoding="utf-8").splitlines()]
        assert exported == list(seed_db[pipeline.entity(e).collection].find({}).sort("_id", 1))
    result = runner.invoke(freshctl, ["seed", "--seed", "3", "--database", seed_db.name,
                                      "--changes", "10", "--rate", "0", "-o", "json"])
    assert result.exit_code == 0, result.output
    for kind, n in planned_counts(10).items():
        assert f'"kind": "{kind}",\n    "operations": {n}' in result.output


def test_change_mode_keeps_going_past_where_it_used_to_stop(seed_db: Db, pipeline: PipelineConfig) -> None:
    """At seed 42 change mode stopped after about 1,800 changes ("found no target for a loyalty
    upgrade in 50 draws"): every drawn customer had become platinum. It must run for hours now."""
    plan = Plan(seed=42)
    _seed(seed_db, pipeline, plan)
    report = ChangeRunner(seed_db, pipeline, Domain(plan)).run(4000, rate=0)
    assert report.counts == planned_counts(4000)
    _assert_integrity(seed_db, pipeline, seeded_prices=False)
