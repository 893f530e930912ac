"""Every panel of every dashboard runs on the real engine after a seeded pipeline run, with the
plugin's macros and the dashboard's variables expanded by `grafana.macros`; the RAW Overview shows
the seed's numbers; time-based panels stay inside the chosen range; the snapshots exist and draw
the queried values. The dashboards are rendered from the same code as the committed JSON (the unit
tests prove the two equal), for this run's unique database names."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from clickhouse.backend import ChdbBackend
from fresh.pipeline import PipelineConfig
from generator.domain import Plan
from grafana import catalog
from grafana.macros import QueryContext, Variable, expand
from grafana.query import DashboardRun, parse_time, run_dashboard, stat_value, to_number
from grafana.render import dashboard_json
from grafana.snapshot import format_value, svg, write_snapshot

Seeded = tuple[PipelineConfig, ChdbBackend, Plan]
SALES_FROM = datetime(2025, 1, 1, tzinfo=UTC)
SALES_TO = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def runs(seeded_pipeline: Seeded) -> dict[str, DashboardRun]:
    """Every dashboard run once: its own time range, Sales over the seed's year."""
    cfg, backend, _ = seeded_pipeline
    out = {}
    for spec in catalog.dashboards(cfg):
        sales = spec.uid.endswith("sales")
        out[spec.uid.removeprefix("probablyfresh-")] = run_dashboard(
            backend, dashboard_json(spec), start=SALES_FROM if sales else None, end=SALES_TO if sales else None)
    return out


def _panel(run: DashboardRun, title: str) -> Any:
    return next(p for p in run.panels if p.title == title)


def test_every_panel_of_every_dashboard_runs(seeded_pipeline: Seeded, runs: dict[str, DashboardRun]) -> None:
    cfg, _, _ = seeded_pipeline
    assert set(runs) == {"raw-overview", "sales", "pipeline-health"}
    for spec in catalog.dashboards(cfg):
        run = runs[spec.uid.removeprefix("probablyfresh-")]
        assert [p.title for p in run.panels] == [p.title for p in spec.panels()]
        for panel in run.panels:
            assert "$" not in panel.sql
    # panels that must show data after a seeded run
    for board, title in [("raw-overview", "RAW rows per entity"), ("sales", "Daily sales"), ("sales", "Top products"),
                         ("sales", "Sales by category"), ("sales", "Average check by loyalty status"),
                         ("sales", "Customer activity"), ("sales", "Orders per interval"),
                         ("pipeline-health", "Freshness per entity"), ("pipeline-health", "Rows ingested per minute"),
                         ("pipeline-health", "PII processor throughput"), ("pipeline-health", "Duplicate ratio"),
                         ("pipeline-health", "Data quality per entity")]:
        assert _panel(runs[board], title).rows, f"{board}: {title} returned no rows"


def test_raw_overview_shows_the_seed(runs: dict[str, DashboardRun], seeded_pipeline: Seeded) -> None:
    _, _, plan = seeded_pipeline
    board = runs["raw-overview"]
    expected = {"Stores": 45, "Products": 100, "Customers": plan.counts["customers"],
                "Purchases": plan.counts["purchases"]}
    assert plan.counts["stores"] == 45 and plan.counts["products"] == 100
    for what, n in expected.items():
        assert stat_value(_panel(board, f"{what} count")) == n, what
        assert stat_value(_panel(board, f"{what} in MART")) == n, what
    networks = {r["network"]: to_number(r["stores"]) for r in _panel(board, "Stores by network").rows}
    assert set(networks) == {"ProbablyFresh Almost", "ProbablyFresh Maybe"}
    assert sum(v or 0 for v in networks.values()) == 45


def test_sales_totals_agree_and_variables_filter(seeded_pipeline: Seeded, runs: dict[str, DashboardRun]) -> None:
    cfg, backend, _ = seeded_pipeline
    sales = runs["sales"]
    revenue = stat_value(_panel(sales, "Revenue"))
    orders = stat_value(_panel(sales, "Orders"))
    mart = cfg.clickhouse.mart_database
    truth = backend.query(f"SELECT sum(total) AS r, count() AS n FROM {mart}.purchases FINAL "
                          "WHERE status = 'completed' AND NOT is_deleted")[0]
    assert orders == to_number(truth["n"]) and orders and orders > 0
    assert revenue == pytest.approx(to_number(truth["r"]), rel=1e-9)
    daily = sum(to_number(r["revenue"]) or 0 for r in _panel(sales, "Daily sales").rows)
    assert daily == pytest.approx(revenue, rel=1e-6)
    assert set(sales.variables) == {"network", "store"}
    assert len(sales.variables["store"].options) == 45

    # One store selected: the same panel SQL, the variable expanded, a smaller revenue.
    spec = next(s for s in catalog.dashboards(cfg) if s.uid.endswith("sales"))
    sql = next(p for p in spec.panels() if p.title == "Revenue").sql
    variables = {"network": sales.variables["network"],
                 "store": Variable(sales.variables["store"].options, ["S001"])}
    one = backend.query(expand(sql, QueryContext(SALES_FROM, SALES_TO, variables)))
    by_store = backend.query(f"SELECT sum(total) AS r FROM {mart}.purchases FINAL WHERE status = 'completed' "
                             "AND NOT is_deleted AND store_id = 'S001'")[0]
    assert to_number(one[0]["revenue"]) == pytest.approx(to_number(by_store["r"]))
    assert 0 < (to_number(one[0]["revenue"]) or 0) < (revenue or 0)
    # A network selected: only that network's stores.
    variables = {"network": Variable(sales.variables["network"].options, ["ProbablyFresh Maybe"]),
                 "store": sales.variables["store"]}
    maybe = backend.query(expand(sql, QueryContext(SALES_FROM, SALES_TO, variables)))
    assert 0 < (to_number(maybe[0]["revenue"]) or 0) < (revenue or 0)


def test_time_series_rows_stay_inside_the_chosen_range(seeded_pipeline: Seeded) -> None:
    cfg, backend, _ = seeded_pipeline
    spec = next(s for s in catalog.dashboards(cfg) if s.uid.endswith("sales"))
    start, end = datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC)
    run = run_dashboard(backend, dashboard_json(spec), start=start, end=end)
    for title in ("Orders per interval", "Daily sales"):
        rows = _panel(run, title).rows
        assert rows, title
        times = [parse_time(str(r["time"]), end) for r in rows]
        assert all(start <= t <= end for t in times), f"{title}: {min(times)}..{max(times)} outside {start}..{end}"
    in_range = sum(to_number(r["orders"]) or 0 for r in _panel(run, "Orders per interval").rows)
    assert in_range == stat_value(_panel(run, "Orders")) and in_range < 1000


def test_snapshots_draw_every_dashboard_with_the_queried_values(runs: dict[str, DashboardRun],
                                                                 tmp_path: Path) -> None:
    for name, run in runs.items():
        png_path, html_path = write_snapshot(run, tmp_path, name)
        assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png_path.stat().st_size > 10_000
        page = html_path.read_text(encoding="utf-8")
        assert "<svg" in page and "<script" not in page and "://cdn" not in page.lower()
        picture = svg(run)
        for panel in run.panels:
            if panel.kind == "stat" and stat_value(panel) is not None:
                drawn = format_value(stat_value(panel), panel.unit)
                assert f">{drawn}<" in picture, f"{name}: stat {panel.title} does not draw {drawn}"
                assert f'data-stat-value="{drawn}"' in page
    overview = (tmp_path / "raw-overview.html").read_text(encoding="utf-8")
    assert 'data-stat-value="45"' in overview and 'data-stat-value="100"' in overview
