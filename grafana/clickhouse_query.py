"""The ClickHouse plugin's query as a grafana-foundation-sdk `Dataquery` variant.

The SDK ships no builder for `grafana-clickhouse-datasource`; its documented pattern for a custom
query type is a `Dataquery` subclass with `to_json`/`from_json`, a builder, and a registered
variant so that `Dashboard.from_json` reads the query back into this class (not into the SDK's
catch-all `UnknownDataquery`). The fields are those the plugin (4.x) stores for an SQL-editor
query: `editorType: sql`, `format` (table, time series, ...) and `rawSql`.
"""

from __future__ import annotations

import enum
from typing import Any, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard

PLUGIN_ID = "grafana-clickhouse-datasource"


class Format(enum.IntEnum):
    """The plugin's `format` (its Format enum in the 4.x query model)."""

    TABLE = 1
    LOGS = 2
    TIME_SERIES = 0
    TRACE = 3


class ClickHouseQuery(cogvariants.Dataquery):
    def __init__(self, ref_id: str = "A", raw_sql: str = "", fmt: Format = Format.TABLE,
                 datasource: dashboard.DataSourceRef | None = None, hide: bool | None = None) -> None:
        self.ref_id = ref_id
        self.raw_sql = raw_sql
        self.format = fmt
        self.datasource = datasource
        self.hide = hide

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "refId": self.ref_id,
            "editorType": "sql",
            "format": int(self.format),
            "rawSql": self.raw_sql,
            "queryType": "timeseries" if self.format == Format.TIME_SERIES else "table",
        }
        if self.datasource is not None:
            out["datasource"] = self.datasource.to_json()
        if self.hide is not None:
            out["hide"] = self.hide
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        ds = data.get("datasource")
        return cls(
            ref_id=str(data.get("refId", "")),
            raw_sql=str(data.get("rawSql", "")),
            fmt=Format(int(data.get("format", Format.TABLE))),
            datasource=dashboard.DataSourceRef.from_json(ds) if isinstance(ds, dict) else None,
            hide=data.get("hide"),
        )


class ClickHouseQueryBuilder(cogbuilder.Builder[ClickHouseQuery]):
    def __init__(self, ref_id: str = "A") -> None:
        self._internal = ClickHouseQuery(ref_id=ref_id)

    def build(self) -> ClickHouseQuery:
        return self._internal

    def raw_sql(self, sql: str) -> Self:
        self._internal.raw_sql = sql
        return self

    def format(self, fmt: Format) -> Self:
        self._internal.format = fmt
        return self

    def datasource(self, ref: dashboard.DataSourceRef) -> Self:
        self._internal.datasource = ref
        return self


def register() -> None:
    """Teach the SDK's runtime to read this plugin's queries back (idempotent)."""
    cogruntime.register_dataquery_variant(
        cogruntime.DataqueryConfig(identifier=PLUGIN_ID, from_json_hook=ClickHouseQuery.from_json)
    )
