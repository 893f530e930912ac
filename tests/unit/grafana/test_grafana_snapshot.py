"""The snapshot drawing, on results made up here (the integration test draws real ones): every panel
type renders, stat values are drawn as formatted, the HTML is self-contained."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from grafana.macros import Variable
from grafana.query import DashboardRun, PanelResult, parse_time
from grafana.snapshot import format_value, svg, write_snapshot


def _run() -> DashboardRun:
    def panel(i: int, kind: str, title: str, unit: str, grid: tuple[int, int, int, int], rows: list[dict],
              x_field: str | None = None) -> PanelResult:
        return PanelResult(i, kind, title, f"{title} description", unit, grid, "SELECT 1", rows, 0.001, x_field)

    return DashboardRun(
        "probablyfresh-test", "Test board", datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC),
        {"store": Variable(["S001", "S002"])}, rows=[("First row", 0)],
        panels=[
            panel(2, "stat", "Stores count", "short", (0, 1, 6, 4), [{"stores": "45"}]),
            panel(3, "stat", "Revenue", "currencyRUB", (6, 1, 6, 4), [{"revenue": 1234.5}]),
            panel(4, "stat", "Empty", "short", (12, 1, 6, 4), []),
            panel(5, "barchart", "By network", "short", (0, 5, 12, 8),
                  [{"network": "ProbablyFresh Almost", "stores": "30"},
                   {"network": "ProbablyFresh Maybe", "stores": 15}],
                  x_field="network"),
            panel(6, "timeseries", "Per minute", "rpm", (12, 5, 12, 8),
                  [{"time": "2025-01-01 00:00:00", "entity": "stores", "rows": "3"},
                   {"time": "2025-01-01 00:01:00", "entity": "stores", "rows": "5"},
                   {"time": "2025-01-01 00:01:00", "entity": "products", "rows": "1"}]),
            panel(7, "table", "A table <b>", "short", (0, 13, 24, 6), [{"entity": "stores", "rows": "45"}]),
        ])


def test_every_panel_type_draws_and_stats_show_their_values(tmp_path: Path) -> None:
    run = _run()
    picture = svg(run)
    for text in (">45<", ">₽1,234.50<", ">No data<", ">Stores count<", ">First row<", ">ProbablyFresh Maybe<"):
        assert text in picture, text
    png_path, html_path = write_snapshot(run, tmp_path, "test")
    assert png_path.read_bytes()[:4] == b"\x89PNG"
    page = html_path.read_text(encoding="utf-8")
    assert 'data-stat-value="45"' in page and 'data-stat-value="₽1,234.50"' in page
    assert "<script" not in page and "A table &lt;b&gt;" in page and "store = All" in page


@pytest.mark.parametrize(("value", "unit", "text"), [
    ("45", "short", "45"), (1000, "short", "1,000"), (2.5, "short", "2.50"), (0.0125, "percentunit", "1.25%"),
    ("12.5", "currencyRUB", "₽12.50"), (4, "s", "4 s"), (None, "short", ""), ("abc", "short", "abc"),
])
def test_format_value(value: object, unit: str, text: str) -> None:
    assert format_value(value, unit) == text


def test_parse_time() -> None:
    now = datetime(2025, 6, 1, 12, tzinfo=UTC)
    assert parse_time("now", now) == now
    assert parse_time("now-2d", now) == datetime(2025, 5, 30, 12, tzinfo=UTC)
    assert parse_time("2025-01-01", now) == datetime(2025, 1, 1, tzinfo=UTC)
