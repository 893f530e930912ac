"""Dashboard and panel specs, and their translation into grafana-foundation-sdk models.

A dashboard is a `DashboardSpec`: rows of `PanelSpec`s (kind, title, description, unit, SQL,
size). `build_dashboard` lays the panels out on Grafana's 24-column grid (left to right, wrapping,
each row below the last) and builds the SDK model, every query a ClickHouse SQL query on the
provisioned datasource. Everything else (the committed JSON, the tests, the snapshots) reads the
dashboards through this one model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from grafana_foundation_sdk.builders import barchart, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dashboard_model

from grafana.clickhouse_query import PLUGIN_ID, ClickHouseQueryBuilder, Format

GRID_COLUMNS = 24
PanelKind = Literal["stat", "barchart", "timeseries", "table"]
# The units (Grafana unit ids) a panel may carry; a typo would render as a plain number in Grafana.
UNITS = {"short", "none", "s", "ms", "percentunit", "currencyRUB", "rps", "rpm", "dateTimeAsIso", "dtdurations"}


@dataclass(frozen=True)
class PanelSpec:
    kind: PanelKind
    title: str
    description: str
    sql: str
    unit: str
    w: int = 6
    h: int = 6
    # barchart: the field on the category axis (the first string column otherwise)
    x_field: str | None = None

    @property
    def format(self) -> Format:
        return Format.TIME_SERIES if self.kind == "timeseries" else Format.TABLE


@dataclass(frozen=True)
class RowSpec:
    title: str
    panels: list[PanelSpec]


@dataclass(frozen=True)
class VariableSpec:
    """A query variable: its options are the first column of `sql` (which may use earlier variables)."""

    name: str
    label: str
    description: str
    sql: str


@dataclass(frozen=True)
class DashboardSpec:
    uid: str
    title: str
    description: str
    rows: list[RowSpec]
    time_from: str = "now-24h"
    time_to: str = "now"
    refresh: str = "1m"
    tags: list[str] = field(default_factory=lambda: ["probablyfresh"])
    variables: list[VariableSpec] = field(default_factory=list)

    def panels(self) -> list[PanelSpec]:
        return [p for row in self.rows for p in row.panels]


def datasource_ref(uid: str) -> dashboard_model.DataSourceRef:
    return dashboard_model.DataSourceRef(type_val=PLUGIN_ID, uid=uid)


def _panel_builder(spec: PanelSpec, ds: dashboard_model.DataSourceRef) -> dashboard_builders.Panel:
    query = ClickHouseQueryBuilder("A").raw_sql(spec.sql).format(spec.format).datasource(ds)
    builder: (stat.Panel | barchart.Panel | timeseries.Panel | table.Panel)
    if spec.kind == "stat":
        builder = (stat.Panel().graph_mode(common.BigValueGraphMode.NONE)
                   .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False)))
    elif spec.kind == "barchart":
        builder = barchart.Panel().show_value(common.VisibilityMode.AUTO).orientation(common.VizOrientation.AUTO)
        if spec.x_field:
            builder = builder.x_field(spec.x_field)
    elif spec.kind == "timeseries":
        builder = timeseries.Panel().line_width(2).fill_opacity(10)
    else:
        builder = table.Panel()
    return (builder.title(spec.title).description(spec.description).unit(spec.unit)  # type: ignore[return-value]
            .datasource(ds).with_target(query))


def layout(spec: DashboardSpec) -> list[tuple[RowSpec | PanelSpec, dashboard_model.GridPos]]:
    """Grid positions: a row takes a full-width line; its panels flow left to right and wrap."""
    out: list[tuple[RowSpec | PanelSpec, dashboard_model.GridPos]] = []
    y = 0
    for row in spec.rows:
        out.append((row, dashboard_model.GridPos(x=0, y=y, w=GRID_COLUMNS, h=1)))
        y += 1
        x, line_h = 0, 0
        for panel in row.panels:
            if x + panel.w > GRID_COLUMNS:
                x, y, line_h = 0, y + line_h, 0
            out.append((panel, dashboard_model.GridPos(x=x, y=y, w=panel.w, h=panel.h)))
            x += panel.w
            line_h = max(line_h, panel.h)
        y += line_h
    return out


def build_dashboard(spec: DashboardSpec, datasource_uid: str) -> dashboard_model.Dashboard:
    ds = datasource_ref(datasource_uid)
    board = (dashboard_builders.Dashboard(spec.title).uid(spec.uid).description(spec.description).tags(spec.tags)
             .time(spec.time_from, spec.time_to).timezone("utc").refresh(spec.refresh)
             .tooltip(dashboard_model.DashboardCursorSync.CROSSHAIR).readonly())
    for variable in spec.variables:
        board = board.with_variable(
            dashboard_builders.QueryVariable(variable.name).label(variable.label).description(variable.description)
            .datasource(ds).query(variable.sql).multi(True).include_all(True).allow_custom_value(False)
            .refresh(dashboard_model.VariableRefresh.ON_DASHBOARD_LOAD).sort(dashboard_model.VariableSort.ALPHABETICAL_ASC)
            .current(dashboard_model.VariableOption(selected=True, text="All", value="$__all"))
        )
    for panel_id, (item, pos) in enumerate(layout(spec), start=1):
        if isinstance(item, RowSpec):
            board = board.with_row(dashboard_builders.Row(item.title).id(panel_id).grid_pos(pos))
        else:
            board = board.with_panel(_panel_builder(item, ds).id(panel_id).grid_pos(pos))
    return board.build()
