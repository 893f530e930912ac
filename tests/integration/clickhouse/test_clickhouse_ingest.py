"""Records in the `_secure` topics reach RAW and MART through the real broker and the embedded
engine's Kafka tables. The records are produced in the documented `_secure` shape by
`tests/secure_records.py` (the PII processor's own end-to-end test feeds real processor output).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from clickhouse.audit import audit
from clickhouse.backend import ChdbBackend
from clickhouse.migrate import migrate
from clickhouse.quality import layer_counts, quality_stats, validation_summary
from clickhouse.render import render_migrations
from fresh.pipeline import PipelineConfig
from fresh.settings import Settings
from fresh.wait import wait_until
from stack.kafka_security import engine_connection
from tests import secure_records as sr

T0 = 1_763_000_000_000  # a fixed source timestamp (ms); versions below are T0 + n


@dataclass
class Landed:
    cfg: PipelineConfig
    backend: ChdbBackend

    def rows(self, sql: str) -> list[dict]:
        names = self.cfg.clickhouse
        return self.backend.query(sql.format(raw=names.raw_database, mart=names.mart_database))

    def n(self, sql: str) -> int:
        return int(self.rows(sql)[0]["n"])


@pytest.fixture(scope="module")
def landed(chdb_backend: ChdbBackend, pipeline: PipelineConfig, settings: Settings,
           make_unique_config: Callable[[PipelineConfig, str], PipelineConfig], new_tag: Callable[[], str]) -> Landed:
    cfg = make_unique_config(pipeline, new_tag())
    migrate(chdb_backend, render_migrations(cfg, engine_connection(settings, cfg)), cfg.clickhouse.raw_database)
    topic = {name: e.secure_topic for name, e in cfg.entities.items()}
    p = sr.SecureProducer(settings.kafka("admin"))

    p.send(topic["stores"], sr.store("S001", T0 + 1, name="Old name"))
    p.send(topic["stores"], sr.store("S001", T0 + 1, name="Old name"))  # duplicate (redelivery)
    p.send(topic["stores"], sr.store("S001", T0 + 5, op="u", name="New name"))  # update
    p.send(topic["stores"], sr.store("S002", T0 + 2, network="ProbablyFresh Maybe"))
    p.send(topic["stores"], sr.delete_marker(T0 + 9), doc_id="S002")  # delete marker: id only in the key
    p.send(topic["stores"], None, doc_id="S002")  # its tombstone
    p.send_raw(topic["stores"], b'{"_id": "S009", "store_id": "S0', key=sr.message_key("S009"))  # malformed
    p.send(topic["stores"], sr.store("S003", T0 + 3))  # after the broken one: ingestion goes on

    p.send(topic["products"], sr.product("P001", T0 + 1, category="dairy"))
    p.send(topic["products"], sr.product("P002", T0 + 1, category="bakery", price=-1.0))  # rejected

    p.send(topic["customers"], sr.customer("C000001", T0 + 1, loyalty_status="gold"))
    p.send(topic["customers"], sr.customer("C000002", T0 + 1, loyalty_status="bronze"))

    p.send(topic["purchases"], sr.purchase("T00000001", T0 + 1, store_id="S001", customer_id="C000001",
                                           items=[("P001", "dairy", 2, 50.0)]))
    p.send(topic["purchases"], sr.purchase("T00000002", T0 + 2, store_id="S001", customer_id="C000001",
                                           items=[("P001", "dairy", 1, 50.0), ("P001", "dairy", 3, 10.0)]))
    p.send(topic["purchases"], sr.purchase("T00000003", T0 + 3, store_id="S404", customer_id="C000002",
                                           items=[("P001", "dairy", 1, 20.0)]))  # unknown store: flagged
    p.send(topic["purchases"], sr.purchase("T00000004", T0 + 4, items=[("P001", "dairy", -2, 50.0)]))  # rejected
    p.flush()

    landed = Landed(cfg, chdb_backend)
    expected = {"stores": 6, "products": 2, "customers": 2, "purchases": 4}

    def all_in() -> bool:
        counts = {r["entity"]: r["raw_rows"] for r in layer_counts(chdb_backend, cfg)}
        errors = landed.n("SELECT count() AS n FROM {raw}.kafka_errors")
        return counts == expected and errors == 1

    wait_until(all_in, timeout_s=90, what=f"RAW rows {expected} and 1 broken message in {cfg.clickhouse.raw_database}")
    return landed


def test_raw_keeps_payload_ciphertexts_blind_indexes_and_kafka_coordinates(landed: Landed) -> None:
    rows = landed.rows("SELECT * FROM {raw}.customers WHERE customer_id = 'C000001'")
    assert len(rows) == 1
    row = rows[0]
    assert row["email"].startswith("pf2.") and row["phone"].startswith("pf2.")
    assert row["email_bidx"] == sr.blind_index("c000001@example.com")
    assert row["_topic"] == landed.cfg.entity("customers").secure_topic
    assert row["_partition"] == 0 and row["_offset"] >= 0 and row["ingested_at"]
    assert '"loyalty_status":"gold"' in row["payload"]  # compact JSON, as the processor writes
    assert row["op"] == "c" and row["source_ts_ms"] == T0 + 1 and row["deleted"] == 0


def test_duplicate_and_update_leave_one_mart_row_the_newest(landed: Landed) -> None:
    rows = landed.rows("SELECT store_id, name, version FROM {mart}.stores FINAL WHERE store_id = 'S001'")
    # the version is the record's `_secure` offset (migration 010): the update's, the last of S001
    newest = landed.n("SELECT max(_offset) AS n FROM {raw}.stores WHERE store_id = 'S001'")
    assert rows == [{"store_id": "S001", "name": "New name", "version": newest}]
    assert landed.n("SELECT count() AS n FROM {raw}.stores WHERE store_id = 'S001'") == 3


def test_delete_marker_removes_the_row_from_mart_final(landed: Landed) -> None:
    assert landed.n("SELECT count() AS n FROM {mart}.stores FINAL WHERE store_id = 'S002'") == 0
    # the marker, keyed by `_id` as it lacked the business key, is in RAW and in MART (not FINAL)
    assert landed.n("SELECT count() AS n FROM {raw}.stores WHERE store_id = 'S002' AND deleted = 1") == 1
    assert landed.n("SELECT count() AS n FROM {mart}.stores WHERE store_id = 'S002' AND is_deleted = 1") == 1
    stores = [r["store_id"] for r in landed.rows("SELECT store_id FROM {mart}.stores FINAL ORDER BY store_id")]
    assert stores == ["S001", "S003"]


def test_malformed_message_lands_in_errors_and_ingestion_goes_on(landed: Landed) -> None:
    errors = landed.rows("SELECT entity, error, raw_message, _topic FROM {raw}.kafka_errors")
    assert len(errors) == 1
    assert errors[0]["entity"] == "stores" and errors[0]["error"]
    assert errors[0]["raw_message"] == '{"_id": "S009", "store_id": "S0'
    assert errors[0]["_topic"] == landed.cfg.entity("stores").secure_topic
    assert landed.n("SELECT count() AS n FROM {mart}.stores FINAL WHERE store_id = 'S003'") == 1


def test_validation_rules_are_counted_not_silently_dropped(landed: Landed) -> None:
    summary = {(r["entity"], r["rule"], r["action"]): int(r["rows"])
               for r in validation_summary(landed.backend, landed.cfg)}
    assert summary[("purchases", "non_positive_quantity", "rejected")] == 1
    assert ("purchases", "total_mismatch", "rejected") not in summary
    assert summary[("products", "negative_price", "rejected")] == 1
    assert summary[("purchases", "unknown_store_id", "flagged")] == 1
    assert landed.n("SELECT count() AS n FROM {mart}.purchases FINAL WHERE purchase_id = 'T00000004'") == 0
    assert landed.n("SELECT count() AS n FROM {mart}.products FINAL WHERE product_id = 'P002'") == 0


def test_marts_aggregate_current_rows(landed: Landed) -> None:
    daily = landed.rows("SELECT store_id, network, category, orders, units, toFloat64(revenue) AS revenue "
                        "FROM {mart}.daily_sales ORDER BY store_id")
    assert daily == [
        {"store_id": "S001", "network": "ProbablyFresh Almost", "category": "dairy", "orders": 2, "units": 6,
         "revenue": 180.0},
        {"store_id": "S404", "network": "", "category": "dairy", "orders": 1, "units": 1, "revenue": 20.0},
    ]
    activity = {r["loyalty_status"]: r for r in landed.rows(
        "SELECT loyalty_status, customers, active_customers, orders, toFloat64(total_spent) AS total_spent "
        "FROM {mart}.customer_activity")}
    assert activity["gold"]["orders"] == 2 and activity["gold"]["total_spent"] == 180.0
    assert activity["bronze"]["orders"] == 1
    checks = {r["loyalty_status"]: float(r["average_check"])
              for r in landed.rows("SELECT * FROM {mart}.average_check")}
    assert checks == {"gold": 90.0, "bronze": 20.0}
    products = landed.rows("SELECT product_id, name, units FROM {mart}.product_sales")
    assert products == [{"product_id": "P001", "name": "Product P001", "units": 7}]


def test_quality_stats_per_entity(landed: Landed) -> None:
    stats = {r["entity"]: r for r in quality_stats(landed.backend, landed.cfg)}
    stores = stats["stores"]
    assert stores["raw_rows"] == 6 and stores["mart_rows"] == 2 and stores["error_messages"] == 1
    assert stores["delete_markers"] == 1
    assert float(stores["duplicates_ratio"]) == pytest.approx(1 / 6, abs=1e-3)
    assert stats["purchases"]["rejected_rows"] == 1
    assert stats["products"]["last_ingested"] > "2000"


def test_audit_is_clean_on_secure_data(landed: Landed) -> None:
    tables, findings = audit(landed.backend, landed.cfg)
    assert len(tables) == 4 and all(t["topics"].endswith("_secure") for t in tables)
    assert findings == []
