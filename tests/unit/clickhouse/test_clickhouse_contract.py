"""The MART contract SQL (clickhouse/contract.py) as rendered into migration 008 (no server:
the SQL runs on the real engine in tests/integration/clickhouse/test_clickhouse_contract.py)."""

from __future__ import annotations

from clickhouse import contract
from clickhouse.render import render_migrations
from fresh.pipeline import PipelineConfig


def test_money_in_mart_comes_from_the_json_text_not_a_float(pipeline: PipelineConfig) -> None:
    exact = next(m for m in render_migrations(pipeline, "b:9092") if m.name == "008_exact_mart")
    mart = pipeline.clickhouse.mart_database
    mart_views = [s for s in exact.statements if f"ALTER TABLE {mart}." in s and "_mv MODIFY QUERY" in s]
    assert len(mart_views) == len(pipeline.entities)
    for stmt in mart_views:
        code = "\n".join(line for line in stmt.splitlines() if not line.lstrip().startswith("--"))
        assert "round(" not in code and "JSONExtractFloat(payload" not in code
    products = next(s for s in mart_views if ".products_mv " in s)
    assert "toDecimal64OrZero(extract(payload, '[{,]\\\\s*\"price\"" in products
    purchases = next(s for s in mart_views if ".purchases_mv " in s)
    assert "extractAll(payload, '[{,]\\\\s*\"unit_price\"" in purchases
    assert "extractAll(payload, '[{,]\\\\s*\"line_total\"" in purchases


def test_contract_rules_cover_every_top_level_field_but_the_business_key() -> None:
    sql = contract.contract_rules_sql("products", "product_id")
    for key in ("name", "category", "price", "unit", "manufacturer", "shelf_life_days", "nutrition", "updated_at"):
        assert f"'missing_field:{key}'" in sql and f"'wrong_type:{key}'" in sql
    assert "'bad_decimal:price'" in sql and "missing_field:product_id" not in sql
    purchases = contract.contract_rules_sql("purchases", "purchase_id")
    assert "'missing_field:customer'" in purchases  # nested fields: their parent object must be there
    for key in ("unit_price", "line_total"):
        assert f"'bad_decimal:items.{key}'" in purchases
    # delete markers are not checked against the contract: every check is under `deleted = 0`
    assert sql.count("if(bitAnd(deleted = 0, ") == sql.count("', '')")


def test_contract_rules_join_the_raw_views_broken_rules(pipeline: PipelineConfig) -> None:
    exact = next(m for m in render_migrations(pipeline, "b:9092") if m.name == "008_exact_mart")
    raw = pipeline.clickhouse.raw_database
    raw_views = [s for s in exact.statements if f"ALTER TABLE {raw}." in s and "_mv MODIFY QUERY" in s]
    assert len(raw_views) == len(pipeline.entities)
    for stmt in raw_views:
        assert "arrayConcat(arrayFilter(" in stmt and "'missing_field:" in stmt and "AS unknown_fields" in stmt
    # The streaming Kafka tables are detached before MART's views change and MART is recomputed,
    # and attached at the end, so nothing bypasses the recompute and they then run the new chain.
    code = ["\n".join(ln for ln in s.splitlines() if not ln.lstrip().startswith("--")).strip()
            for s in exact.statements]
    detach = [i for i, s in enumerate(code) if s.startswith("DETACH TABLE")]
    attach = [i for i, s in enumerate(code) if s.startswith("ATTACH TABLE")]
    mart = pipeline.clickhouse.mart_database
    after = [i for i, s in enumerate(code) if s.startswith((f"ALTER TABLE {mart}.", "INSERT INTO"))]
    assert len(detach) == len(attach) == len(pipeline.entities)
    assert max(detach) < min(after) and max(after) < min(attach) and max(attach) == len(code) - 1


def test_known_keys_include_debezium_fields() -> None:
    keys = contract.known_keys("customers", "customer_id")
    assert {"_id", "__op", "__source_ts_ms", "__deleted", "customer_id", "email", "email_bidx"} <= set(keys)
