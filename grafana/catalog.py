"""The dashboards: every panel of every dashboard is defined here, and only here.

To add a panel, add a `PanelSpec` to a row below; `freshctl grafana render` writes its JSON, and
the tests pick it up (its SQL runs on the real engine, its layout and unit are checked).
SQL names come from the pipeline config (databases, entity tables, business keys); the panels
read MART and RAW's non-PII columns only, what migration 007 grants the dashboards user.
"""

from __future__ import annotations

from fresh.pipeline import PipelineConfig
from grafana.panels import DashboardSpec, PanelSpec, RowSpec, VariableSpec

ENTITIES = ("stores", "products", "customers", "purchases")


def _names(cfg: PipelineConfig) -> tuple[str, str, dict[str, str]]:
    keys = {name: cfg.entity(name).business_key for name in ENTITIES}
    return cfg.clickhouse.raw_database, cfg.clickhouse.mart_database, keys


def raw_overview(cfg: PipelineConfig) -> DashboardSpec:
    raw, mart, key = _names(cfg)

    def raw_count(entity: str, what: str) -> PanelSpec:
        return PanelSpec(
            "stat", f"{what} count",
            f"Distinct {entity} ({key[entity]}) received in RAW from the {entity} _secure topic, "
            "deletes included.",
            f"SELECT uniqExact({key[entity]}) AS {entity} FROM {raw}.{entity}", "short", w=6, h=4)

    def mart_count(entity: str, what: str) -> PanelSpec:
        return PanelSpec(
            "stat", f"{what} in MART",
            f"Current {entity} in MART: one row per {key[entity]} (FINAL), deleted ones excluded.",
            f"SELECT count() AS {entity} FROM {mart}.{entity} FINAL WHERE NOT is_deleted", "short", w=6, h=4)

    return DashboardSpec(
        uid="probablyfresh-raw-overview",
        title="ProbablyFresh RAW Overview",
        description="What reached ClickHouse: entities per layer (RAW as received, MART deduplicated) "
                    "and the stores of both networks.",
        time_from="now-7d",
        rows=[
            RowSpec("RAW layer", [
                raw_count("stores", "Stores"),
                raw_count("products", "Products"),
                raw_count("customers", "Customers"),
                raw_count("purchases", "Purchases"),
                PanelSpec(
                    "barchart", "Stores by network",
                    "Distinct stores per network (ProbablyFresh Almost, ProbablyFresh Maybe) in RAW.",
                    f"SELECT network, uniqExact({key['stores']}) AS stores FROM {raw}.stores "
                    "GROUP BY network ORDER BY network", "short", w=12, h=8, x_field="network"),
                PanelSpec(
                    "table", "RAW rows per entity",
                    "Every message received per entity (updates and deletes are rows too), and the newest.",
                    " UNION ALL ".join(
                        f"SELECT '{e}' AS entity, count() AS rows, max(ingested_at) AS last_ingested "
                        f"FROM {raw}.{e}" for e in ENTITIES), "short", w=12, h=8),
            ]),
            RowSpec("MART layer", [
                mart_count("stores", "Stores"),
                mart_count("products", "Products"),
                mart_count("customers", "Customers"),
                mart_count("purchases", "Purchases"),
            ]),
        ],
    )


def sales(cfg: PipelineConfig) -> DashboardSpec:
    _, mart, key = _names(cfg)
    sk = key["stores"]
    stores_in_network = (f"SELECT {sk} FROM {mart}.stores FINAL "
                         "WHERE NOT is_deleted AND network IN (${network:singlequote})")

    def where_store(col: str) -> str:
        return (f"$__conditionalAll({col} IN (${{store:singlequote}}), $store) "
                f"AND $__conditionalAll({col} IN ({stores_in_network}), $network)")

    purchases = (f"{mart}.purchases FINAL WHERE status = 'completed' AND NOT is_deleted "
                 f"AND $__timeFilter(purchased_at) AND {where_store('store_id')}")
    return DashboardSpec(
        uid="probablyfresh-sales",
        title="ProbablyFresh Sales",
        description="Sales marts: completed purchases only (returned and cancelled ones excluded), in UTC. "
                    "The time picker and the network and store variables filter every panel but "
                    "Customer activity (all time, all stores).",
        time_from="now-2y",
        variables=[
            VariableSpec("network", "Network", "Store network",
                         f"SELECT DISTINCT network FROM {mart}.stores FINAL WHERE NOT is_deleted ORDER BY network"),
            VariableSpec("store", "Store", "Stores of the chosen networks",
                         f"SELECT {sk} FROM {mart}.stores FINAL WHERE NOT is_deleted "
                         f"AND $__conditionalAll(network IN (${{network:singlequote}}), $network) ORDER BY {sk}"),
        ],
        rows=[
            RowSpec("Totals", [
                PanelSpec("stat", "Revenue", "Sum of completed purchases' totals in the time range.",
                          f"SELECT sum(total) AS revenue FROM {purchases}", "currencyRUB", w=8, h=4),
                PanelSpec("stat", "Orders", "Completed purchases in the time range.",
                          f"SELECT count() AS orders FROM {purchases}", "short", w=8, h=4),
                PanelSpec("stat", "Average check", "Average total of a completed purchase in the time range.",
                          f"SELECT round(avg(total), 2) AS average_check FROM {purchases}", "currencyRUB", w=8, h=4),
            ]),
            RowSpec("Over time", [
                # Reads purchases, not the daily_sales view: the view aggregates all history before
                # a day filter applies (2 s at 1M purchases, docs/benchmarks.md).
                PanelSpec(
                    "timeseries", "Daily sales",
                    "Revenue of completed purchases per day (UTC) in the time range.",
                    f"SELECT toDateTime(toDate(purchased_at)) AS time, sum(total) AS revenue FROM {purchases} "
                    "GROUP BY time ORDER BY time",
                    "currencyRUB", w=12, h=8),
                PanelSpec(
                    "timeseries", "Orders per interval",
                    "Completed purchases per time bucket ($__timeInterval follows the time range).",
                    f"SELECT $__timeInterval(purchased_at) AS time, count() AS orders FROM {purchases} "
                    "GROUP BY time ORDER BY time", "short", w=12, h=8),
            ]),
            RowSpec("Products", [
                PanelSpec(
                    "barchart", "Top products",
                    "The ten products with the highest revenue in the time range.",
                    f"SELECT product, sum(line_total) AS revenue FROM {mart}.purchases FINAL "
                    "ARRAY JOIN item_name AS product, item_line_total AS line_total "
                    f"WHERE status = 'completed' AND NOT is_deleted AND $__timeFilter(purchased_at) "
                    f"AND {where_store('store_id')} GROUP BY product ORDER BY revenue DESC, product LIMIT 10",
                    "currencyRUB", w=12, h=9, x_field="product"),
                PanelSpec(
                    "barchart", "Sales by category",
                    "Revenue per product category (purchase lines) in the time range.",
                    f"SELECT category, sum(line_total) AS revenue FROM {mart}.purchases FINAL "
                    "ARRAY JOIN item_category AS category, item_line_total AS line_total "
                    f"WHERE status = 'completed' AND NOT is_deleted AND $__timeFilter(purchased_at) "
                    f"AND {where_store('store_id')} GROUP BY category ORDER BY category",
                    "currencyRUB", w=12, h=9, x_field="category"),
            ]),
            RowSpec("Customers", [
                PanelSpec(
                    "barchart", "Average check by loyalty status",
                    "Average total of completed purchases per customer loyalty status ('' = unknown customer).",
                    f"SELECT cu.loyalty_status AS loyalty_status, round(avg(pu.total), 2) AS average_check "
                    f"FROM (SELECT customer_id, total FROM {purchases}) AS pu "
                    f"LEFT JOIN (SELECT {key['customers']}, loyalty_status FROM {mart}.customers FINAL "
                    f"WHERE NOT is_deleted) AS cu ON cu.{key['customers']} = pu.customer_id "
                    "GROUP BY loyalty_status ORDER BY loyalty_status",
                    "currencyRUB", w=12, h=8, x_field="loyalty_status"),
                PanelSpec(
                    "table", "Customer activity",
                    "Per loyalty status, all time: customers, those with a completed purchase, their orders "
                    "and spend (mart customer_activity).",
                    f"SELECT loyalty_status, customers, active_customers, orders, total_spent "
                    f"FROM {mart}.customer_activity ORDER BY loyalty_status", "short", w=12, h=8),
            ]),
        ],
    )


def pipeline_health(cfg: PipelineConfig) -> DashboardSpec:
    raw, mart, _ = _names(cfg)
    entities = list(ENTITIES)
    return DashboardSpec(
        uid="probablyfresh-pipeline-health",
        title="ProbablyFresh Pipeline health",
        description="Is data flowing, fresh and clean: freshness, ingest rate, Kafka engine consumers, "
                    "stream errors, MART rejects and data quality. The processor's own counters "
                    "(DLQ by reason) are not in ClickHouse yet: docs/grafana.md says how they will get there.",
        time_from="now-6h",
        refresh="30s",
        rows=[
            RowSpec("Flow", [
                PanelSpec(
                    "barchart", "Freshness per entity",
                    "Seconds since the newest row of each entity landed in RAW (now minus max(ingested_at)).",
                    " UNION ALL ".join(
                        f"SELECT '{e}' AS entity, dateDiff('second', max(ingested_at), now64(3)) AS freshness "
                        f"FROM {raw}.{e}" for e in entities), "s", w=8, h=8, x_field="entity"),
                PanelSpec(
                    "timeseries", "Rows ingested per minute",
                    "RAW rows per minute and entity, by ingestion time.",
                    "SELECT time, entity, rows FROM (" + " UNION ALL ".join(
                        f"SELECT toStartOfMinute(ingested_at) AS time, '{e}' AS entity, count() AS rows "
                        f"FROM {raw}.{e} WHERE $__timeFilter(ingested_at) GROUP BY time" for e in entities)
                    + ") ORDER BY time, entity", "rpm", w=8, h=8),
                PanelSpec(
                    "timeseries", "PII processor throughput",
                    "Records per second the PII processor delivered through the _secure topics, as ClickHouse "
                    "ingested them (all entities).",
                    "SELECT time, sum(rows) / $__interval_s AS records_per_second FROM (" + " UNION ALL ".join(
                        f"SELECT $__timeInterval(ingested_at) AS time, count() AS rows FROM {raw}.{e} "
                        "WHERE $__timeFilter(ingested_at) GROUP BY time" for e in entities)
                    + ") GROUP BY time ORDER BY time", "rps", w=8, h=8),
            ]),
            RowSpec("Errors and rejects", [
                PanelSpec(
                    "stat", "Stream errors",
                    "Messages the Kafka engine could not parse in the time range (kafka_handle_error_mode="
                    "'stream'): kept in RAW's kafka_errors, not lost.",
                    f"SELECT count() AS errors FROM {raw}.kafka_errors WHERE $__timeFilter(ingested_at)",
                    "short", w=6, h=8),
                PanelSpec(
                    "table", "Latest stream errors",
                    "The 20 newest unparsable messages: where they came from and the parser's error "
                    "(the raw message is not shown; the dashboards user cannot read it).",
                    f"SELECT ingested_at, entity, _topic AS topic, _partition AS partition, _offset AS offset, error "
                    f"FROM {raw}.kafka_errors ORDER BY ingested_at DESC LIMIT 20", "short", w=10, h=8),
                PanelSpec(
                    "barchart", "MART rejects by reason",
                    "Rows kept out of MART in the time range, per entity and broken validation rule.",
                    f"SELECT concat(entity, ': ', rule) AS reason, count() AS rows FROM {mart}.rejects "
                    "WHERE $__timeFilter(ingested_at) GROUP BY reason ORDER BY rows DESC, reason",
                    "short", w=8, h=8, x_field="reason"),
            ]),
            RowSpec("Data quality and consumers", [
                PanelSpec(
                    "barchart", "Duplicate ratio",
                    "Share of RAW rows that repeat a (business key, source version) already received "
                    "(redeliveries; MART keeps one).",
                    f"SELECT entity, duplicates_ratio FROM {mart}.quality_stats ORDER BY entity",
                    "percentunit", w=8, h=8, x_field="entity"),
                PanelSpec(
                    "table", "Data quality per entity",
                    "RAW rows, current MART rows, delete markers, rejected rows and stream errors per entity "
                    "(mart quality_stats).",
                    f"SELECT entity, raw_rows, mart_rows, delete_markers, rejected_rows, error_messages "
                    f"FROM {mart}.quality_stats ORDER BY entity", "short", w=16, h=8),
                PanelSpec(
                    "table", "Kafka engine consumers",
                    "ClickHouse's Kafka consumers of the _secure topics (system.kafka_consumers): messages read, "
                    "last poll and commit, rebalances, and exceptions.",
                    "SELECT table, arrayStringConcat(arrayDistinct(`assignments.topic`), ',') AS topics, "
                    "num_messages_read AS messages_read, last_poll_time, last_commit_time, "
                    "num_rebalance_assignments AS rebalances, length(`exceptions.text`) AS exceptions "
                    f"FROM system.kafka_consumers WHERE database = '{raw}' ORDER BY table", "short", w=24, h=7),
            ]),
        ],
    )


def dashboards(cfg: PipelineConfig) -> list[DashboardSpec]:
    """Every dashboard, in the order the docs and the snapshots list them."""
    return [raw_overview(cfg), sales(cfg), pipeline_health(cfg)]
