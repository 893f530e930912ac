"""`freshctl grafana ...`: render, check, list, snapshot. Parses, calls, prints."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from fresh.output import OUTPUT_OPTION, print_rows

if TYPE_CHECKING:
    from fresh.settings import Settings

# grafana's modules (the SDK, chdb, vl-convert) are imported inside each command: a TAB in
# `freshctl grafana ...` loads this module and must stay quick (docs/cli.md).


@click.group()
def grafana() -> None:
    """Grafana datasource and dashboards as code (grafana/), and pictures of them.

    \b
    Examples:
      freshctl grafana render              # write grafana/provisioning and grafana/dashboards
      freshctl grafana check               # exit 3 with a one-line diff if they drifted
      freshctl grafana list -o json        # every dashboard and panel
      freshctl grafana snapshot            # PNG + HTML per dashboard into .stack/snapshots
    """


@grafana.command("render")
@click.option("--dry-run", is_flag=True, help="Say what would change; write nothing.")
@click.pass_obj
def render_cmd(settings: Settings, dry_run: bool) -> None:
    """Render the datasource, the dashboard provider and every dashboard JSON from the code.

    \b
    Examples:
      freshctl grafana render
      freshctl grafana render --dry-run
    """
    from fresh.pipeline import load_pipeline_config
    from grafana.render import write

    changes = write(load_pipeline_config(settings.pipeline_config), dry_run=dry_run)
    verb = "would be " if dry_run else ""
    for rel, action in changes:
        click.echo(f"grafana/{rel}: {verb}{action}")
    if not changes:
        click.echo("grafana/: up to date")


@grafana.command("check")
@click.pass_obj
def check_cmd(settings: Settings) -> None:
    """Compare the committed provisioning files with a fresh render; exit 3 on drift.

    \b
    Example:
      freshctl grafana check
    """
    from fresh.pipeline import load_pipeline_config
    from grafana.render import check

    count = check(load_pipeline_config(settings.pipeline_config))
    click.echo(f"grafana/: {count} files match the code")


@grafana.command("list")
@OUTPUT_OPTION
@click.pass_obj
def list_cmd(settings: Settings, output: str) -> None:
    """List every dashboard's panels: file, id, type, title, unit.

    \b
    Examples:
      freshctl grafana list
      freshctl grafana list -o json
    """
    from fresh.pipeline import load_pipeline_config
    from grafana import catalog
    from grafana.render import dashboard_file

    cfg = load_pipeline_config(settings.pipeline_config)
    rows = [{"file": dashboard_file(spec), "dashboard": spec.title, "type": p.kind, "title": p.title, "unit": p.unit}
            for spec in catalog.dashboards(cfg) for p in spec.panels()]
    print_rows(rows, output)


def _time(text: str | None) -> datetime | None:
    from grafana.query import parse_time

    return parse_time(text, datetime.now(UTC)) if text else None


@grafana.command("snapshot")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for <dashboard>.png and <dashboard>.html [default: <stack home>/snapshots, git-ignored].")
@click.option("--dashboard", "only", multiple=True, help="Only this dashboard (file stem, e.g. sales); repeatable.")
@click.option("--from", "start", help="Start of the time range (now-7d, ISO time); default: the dashboard's.")
@click.option("--to", "end", help="End of the time range; default: the dashboard's (now).")
@click.option("--dry-run", is_flag=True, help="Run the queries and print the files that would be written.")
@click.pass_obj
def snapshot_cmd(settings: Settings, out_dir: Path | None, only: tuple[str, ...], start: str | None,
                 end: str | None, dry_run: bool) -> None:
    """Run every panel's query on the configured ClickHouse and draw each dashboard (PNG + HTML).

    Reads the committed dashboard JSON (what Grafana loads). No Grafana server, browser or
    network needed. While `clickhouse ingest` (or `up`) runs, the queries go through it.

    \b
    Examples:
      freshctl grafana snapshot
      freshctl grafana snapshot --dashboard sales --from 2025-01-01 --to 2025-03-01 --out /tmp/pics
    """
    from clickhouse.backend import open_backend
    from grafana.errors import GrafanaError
    from grafana.query import run_dashboard
    from grafana.render import GRAFANA_DIR, committed_dashboards
    from grafana.snapshot import write_snapshot
    from grafana.snapshot_files import snapshot_dir

    out_dir = out_dir or snapshot_dir(settings)
    boards = {Path(rel).stem: data for rel, data in committed_dashboards(GRAFANA_DIR).items()}
    unknown = sorted(set(only) - set(boards))
    if unknown:
        raise GrafanaError(f"no dashboard {', '.join(unknown)}; choose from {', '.join(sorted(boards))}")
    backend = open_backend(settings)
    try:
        for name, data in boards.items():
            if only and name not in only:
                continue
            run = run_dashboard(backend, data, start=_time(start), end=_time(end))
            if dry_run:
                click.echo(f"{out_dir / name}.png, .html: would be written ({len(run.panels)} panels)")
                continue
            png_path, html_path = write_snapshot(run, out_dir, name)
            click.echo(f"{png_path}, {html_path.name}: {len(run.panels)} panels, "
                       f"{sum(len(p.rows) for p in run.panels)} rows")
    finally:
        backend.close()
