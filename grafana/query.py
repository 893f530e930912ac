"""Run a dashboard's panel queries on a ClickHouse backend, as Grafana would send them.

The dashboard is read from its JSON through the SDK's model; template variables are resolved by
running their own queries (every variable at All, as the dashboards open); each panel's SQL is
expanded by `grafana.macros` for the time range and run. The integration tests, the snapshot
command and the benchmark all go through `run_dashboard`.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from grafana_foundation_sdk.models import dashboard as dashboard_model

from clickhouse.backend import Backend, Row
from grafana.clickhouse_query import ClickHouseQuery
from grafana.errors import GrafanaError
from grafana.macros import QueryContext, Variable, expand
from grafana.render import load_dashboard

_RELATIVE = re.compile(r"^now(?:-(\d+)([smhdwMy]))?$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 30 * 86400, "y": 365 * 86400}


def parse_time(text: str, now: datetime) -> datetime:
    """Grafana's `now` / `now-7d` (relative) or an ISO timestamp (UTC if naive)."""
    m = _RELATIVE.match(text)
    if m:
        return now - timedelta(seconds=int(m.group(1) or 0) * _UNIT_S[m.group(2) or "s"])
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise GrafanaError(f"time {text!r}: use now, now-<n><s|m|h|d|w|M|y> or an ISO timestamp") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass
class PanelResult:
    id: int
    kind: str
    title: str
    description: str
    unit: str
    grid: tuple[int, int, int, int]  # x, y, w, h
    sql: str  # expanded
    rows: list[Row]
    seconds: float
    x_field: str | None = None


@dataclass
class DashboardRun:
    uid: str
    title: str
    start: datetime
    end: datetime
    variables: dict[str, Variable]
    rows: list[tuple[str, int]]  # row title, y
    panels: list[PanelResult] = field(default_factory=list)


def panel_queries(model: dashboard_model.Dashboard) -> list[tuple[dashboard_model.Panel, ClickHouseQuery]]:
    """Every (panel, query) of a dashboard model; a panel without a ClickHouse SQL query is an error."""
    out: list[tuple[dashboard_model.Panel, ClickHouseQuery]] = []
    for panel in model.panels or []:
        if isinstance(panel, dashboard_model.RowPanel):
            continue
        targets = panel.targets or []
        queries = [t for t in targets if isinstance(t, ClickHouseQuery) and t.raw_sql.strip()]
        if not queries:
            raise GrafanaError(f"panel {panel.id_val} {panel.title!r} has no ClickHouse SQL target")
        out.extend((panel, q) for q in queries)
    return out


def _first_column(rows: list[Row]) -> list[str]:
    return [str(next(iter(r.values()))) for r in rows if r]


def resolve_variables(backend: Backend, model: dashboard_model.Dashboard, start: datetime,
                      end: datetime) -> dict[str, Variable]:
    variables: dict[str, Variable] = {}
    for var in (model.templating.list_val if model.templating else None) or []:
        sql = var.query if isinstance(var.query, str) else str((var.query or {}).get("rawSql", ""))
        rows = backend.query(expand(sql, QueryContext(start, end, dict(variables))))
        variables[var.name] = Variable(options=_first_column(rows))
    return variables


def run_dashboard(backend: Backend, data: dict[str, Any], *, start: datetime | None = None,
                  end: datetime | None = None, now: datetime | None = None) -> DashboardRun:
    """Run every panel's query of one dashboard JSON; the time range defaults to the dashboard's."""
    model = load_dashboard(data)
    now = now or datetime.now(UTC)
    start = start or parse_time(model.time.from_val if model.time else "now-6h", now)
    end = end or parse_time(model.time.to if model.time else "now", now)
    variables = resolve_variables(backend, model, start, end)
    ctx = QueryContext(start, end, variables)
    run = DashboardRun(model.uid or "", model.title or "", start, end, variables,
                       rows=[(p.title or "", p.grid_pos.y if p.grid_pos else 0)
                             for p in model.panels or [] if isinstance(p, dashboard_model.RowPanel)])
    for panel, query in panel_queries(model):
        sql = expand(query.raw_sql, ctx)
        started = time.perf_counter()
        rows = backend.query(sql)
        seconds = time.perf_counter() - started
        pos = panel.grid_pos or dashboard_model.GridPos()
        unit = (panel.field_config.defaults.unit if panel.field_config and panel.field_config.defaults else None)
        options = panel.options
        x_field = getattr(options, "x_field", None) or (options.get("xField") if isinstance(options, dict) else None)
        run.panels.append(PanelResult(
            id=panel.id_val or 0, kind=panel.type_val, title=panel.title or "", description=panel.description or "",
            unit=unit or "", grid=(pos.x, pos.y, pos.w, pos.h), sql=sql, rows=rows, seconds=seconds,
            x_field=x_field,
        ))
    return run


def to_number(value: Any) -> float | None:
    """A numeric cell as a float (chdb's JSON quotes 64-bit integers), else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


def stat_value(panel: PanelResult) -> float | None:
    """What a stat panel shows: the first numeric cell of its first row (None: no value)."""
    for row in panel.rows[:1]:
        for value in row.values():
            number = to_number(value)
            if number is not None:
                return number
    return None
