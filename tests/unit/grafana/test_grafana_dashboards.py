"""Every committed dashboard and every panel in it, enumerated from the files (a new panel is
tested without touching this file): it loads back into grafana-foundation-sdk's model, names the
provisioned datasource, carries ClickHouse SQL whose macros expand, has a unique id, a title, a
description and a unit, and sits on the 24-column grid without overlapping another panel. The
provisioning files match the code (`freshctl grafana check`) and hold no password."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dashboard_model

from clickhouse.render import dashboard_user
from fresh.pipeline import PipelineConfig
from freshctl.cli import freshctl
from grafana import catalog
from grafana.clickhouse_query import PLUGIN_ID, ClickHouseQuery
from grafana.errors import ProvisioningDriftError
from grafana.macros import QueryContext, Variable, expand
from grafana.panels import GRID_COLUMNS, UNITS
from grafana.query import panel_queries
from grafana.render import (
    CA_FILE,
    DATASOURCE_UID,
    GRAFANA_DIR,
    PASSWORD_FILE,
    check,
    committed_dashboards,
    dashboard_file,
    drift,
    load_dashboard,
    write,
)

BOARDS = committed_dashboards()
PANELS = [(rel, p) for rel, data in BOARDS.items() for p in data["panels"] if p["type"] != "row"]


def _panel_id(item: tuple[str, dict[str, Any]]) -> str:
    return f"{Path(item[0]).stem}:{item[1]['id']}:{item[1]['title']}"


def test_the_three_dashboards_are_committed_with_their_titles() -> None:
    titles = {data["title"] for data in BOARDS.values()}
    assert {"ProbablyFresh RAW Overview", "ProbablyFresh Sales", "ProbablyFresh Pipeline health"} <= titles
    assert len(PANELS) >= 25


def test_committed_files_match_the_code(pipeline: PipelineConfig) -> None:
    assert drift(pipeline) == []
    assert check(pipeline) == len(BOARDS) + 2


def test_check_names_the_first_drifted_line_and_exits_3(pipeline: PipelineConfig, tmp_path: Path) -> None:
    root = tmp_path / "grafana"
    shutil.copytree(GRAFANA_DIR / "dashboards", root / "dashboards")
    shutil.copytree(GRAFANA_DIR / "provisioning", root / "provisioning")
    assert drift(pipeline, root) == []
    target = root / "dashboards" / "sales.json"
    target.write_text(target.read_text(encoding="utf-8").replace('"ProbablyFresh Sales"', '"Sales (edited)"'),
                      encoding="utf-8")
    (root / "dashboards" / "stale.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ProvisioningDriftError) as err:
        check(pipeline, root)
    message = str(err.value)
    assert err.value.exit_code == 3 and "\n" not in message
    assert "grafana/dashboards/sales.json:" in message and "Sales (edited)" in message and "1 more" in message
    # render puts it right, and deletes the stale file
    changes = write(pipeline, root)
    assert ("dashboards/sales.json", "updated") in changes and ("dashboards/stale.json", "deleted") in changes
    assert drift(pipeline, root) == []


def test_the_cli_check_and_render_dry_run(pipeline: PipelineConfig) -> None:
    runner = CliRunner()
    result = runner.invoke(freshctl, ["grafana", "check"])
    assert result.exit_code == 0, result.output
    assert "files match the code" in result.output
    result = runner.invoke(freshctl, ["grafana", "render", "--dry-run"])
    assert result.exit_code == 0 and "up to date" in result.output
    result = runner.invoke(freshctl, ["grafana", "list", "-o", "json"])
    assert result.exit_code == 0
    assert len(json.loads(result.output)) == len(PANELS)


@pytest.mark.parametrize("rel", sorted(BOARDS))
def test_dashboard_loads_into_the_sdk_model_and_round_trips(rel: str) -> None:
    data = BOARDS[rel]
    model = load_dashboard(data)
    assert isinstance(model, dashboard_model.Dashboard)
    assert json.loads(json.dumps(model, cls=JSONEncoder)) == data
    assert data["schemaVersion"] == 41  # Grafana 11.6's model (the pinned SDK build)
    assert data["editable"] is False and data["uid"] and data["description"]
    queries = panel_queries(model)
    assert queries and all(isinstance(q, ClickHouseQuery) for _, q in queries)


@pytest.mark.parametrize("rel", sorted(BOARDS))
def test_panels_have_unique_ids_and_do_not_overlap_on_the_grid(rel: str) -> None:
    panels = BOARDS[rel]["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"{rel}: duplicate panel ids"
    cells: dict[tuple[int, int], str] = {}
    for p in panels:
        g = p["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["y"] >= 0
        assert g["x"] + g["w"] <= GRID_COLUMNS, f"{rel}: {p['title']} runs past column {GRID_COLUMNS}"
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{rel}: {p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]


@pytest.mark.parametrize("item", PANELS, ids=_panel_id)
def test_panel_names_the_datasource_and_carries_sql(item: tuple[str, dict[str, Any]]) -> None:
    _, panel = item
    assert panel["title"].strip() and panel["description"].strip()
    assert panel["datasource"] == {"type": PLUGIN_ID, "uid": DATASOURCE_UID}
    unit = panel["fieldConfig"]["defaults"].get("unit")
    assert unit in UNITS, f"unit {unit!r} is not one of {sorted(UNITS)}"
    assert panel["targets"], "no query"
    for target in panel["targets"]:
        assert target["datasource"] == panel["datasource"]
        assert target["editorType"] == "sql" and target["rawSql"].strip().upper().startswith("SELECT")
        assert target["format"] == (0 if panel["type"] == "timeseries" else 1)


@pytest.mark.parametrize("item", PANELS, ids=_panel_id)
def test_panel_sql_expands_without_leftovers(item: tuple[str, dict[str, Any]]) -> None:
    rel, panel = item
    names = [v["name"] for v in BOARDS[rel].get("templating", {}).get("list", [])]
    end = datetime(2025, 6, 1, tzinfo=UTC)
    for variables in ({n: Variable(["a", "b"]) for n in names}, {n: Variable(["a", "b"], ["b"]) for n in names}):
        sql = expand(panel["targets"][0]["rawSql"], QueryContext(end - timedelta(days=30), end, variables))
        assert "$" not in sql


def test_time_based_panels_use_the_time_picker() -> None:
    """Panels whose title or description speak of the time range filter with the plugin's macros."""
    for rel, panel in PANELS:
        sql = panel["targets"][0]["rawSql"]
        if panel["type"] == "timeseries" or "time range" in panel["description"]:
            assert re.search(r"\$__(timeFilter|dateFilter)\(", sql), f"{rel}: {panel['title']} ignores the time picker"


def test_sales_variables_filter_the_panels() -> None:
    sales = BOARDS["dashboards/sales.json"]
    names = {v["name"] for v in sales["templating"]["list"]}
    assert names == {"network", "store"}
    for v in sales["templating"]["list"]:
        assert v["datasource"]["uid"] == DATASOURCE_UID and v["includeAll"] and v["multi"]
    for panel in sales["panels"]:
        if panel["type"] != "row" and panel["title"] != "Customer activity":
            sql = panel["targets"][0]["rawSql"]
            assert "$store" in sql and "$network" in sql, panel["title"]


def test_code_and_committed_files_enumerate_the_same_panels(pipeline: PipelineConfig) -> None:
    for spec in catalog.dashboards(pipeline):
        committed = [p["title"] for p in BOARDS[dashboard_file(spec)]["panels"] if p["type"] != "row"]
        assert committed == [p.title for p in spec.panels()]


# ---- provisioning ---------------------------------------------------------------------------------


def _yaml(rel: str) -> dict[str, Any]:
    data = yaml.safe_load((GRAFANA_DIR / rel).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_datasource_reads_as_the_read_only_dashboards_user(pipeline: PipelineConfig) -> None:
    files = list((GRAFANA_DIR / "provisioning" / "datasources").glob("*.yaml"))
    assert [f.name for f in files] == ["clickhouse.yaml"]
    (ds,) = _yaml("provisioning/datasources/clickhouse.yaml")["datasources"]
    assert ds["type"] == PLUGIN_ID and ds["uid"] == DATASOURCE_UID and ds["editable"] is False
    assert ds["jsonData"]["username"] == dashboard_user(pipeline)
    assert ds["jsonData"]["defaultDatabase"] == pipeline.clickhouse.mart_database
    assert {"host", "port", "protocol"} <= set(ds["jsonData"])
    # over TLS, the server's certificate verified against the compose CA
    assert ds["jsonData"]["secure"] is True and ds["jsonData"]["tlsSkipVerify"] is False
    assert ds["jsonData"]["tlsAuthWithCACert"] is True
    assert ds["secureJsonData"]["tlsCACert"] == f"$__file{{{CA_FILE}}}"


def test_provisioning_holds_no_literal_password() -> None:
    for path in (GRAFANA_DIR / "provisioning").rglob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
        for ds in data.get("datasources", []):
            assert "password" not in ds and "password" not in ds.get("jsonData", {}), path
            for key, value in ds.get("secureJsonData", {}).items():
                assert re.fullmatch(r"\$__file\{/run/secrets/[a-z0-9.-]+\}", value), (
                    f"{path}: secureJsonData.{key} must be $__file{{/run/secrets/...}} (a compose secret)")
            assert ds.get("secureJsonData", {}).get("password") == f"$__file{{{PASSWORD_FILE}}}"
        assert "change-me" not in text


def test_dashboard_provider_is_a_read_only_folder() -> None:
    (provider,) = _yaml("provisioning/dashboards/probablyfresh.yaml")["providers"]
    assert provider["type"] == "file" and provider["folder"] == "ProbablyFresh"
    assert provider["allowUiUpdates"] is False and provider["disableDeletion"] is True
    assert provider["options"]["path"].startswith("/var/lib/grafana/dashboards")
