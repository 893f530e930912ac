"""`freshctl clickhouse ...`: plan, migrate, audit, verify. Parses, calls, prints."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from fresh.errors import DriftError
from fresh.output import OUTPUT_OPTION, print_rows

if TYPE_CHECKING:
    from clickhouse.backend import Backend
    from fresh.pipeline import PipelineConfig
    from fresh.settings import Settings

# The ClickHouse drivers and the pipeline config are imported inside each command: a TAB in
# `freshctl clickhouse ...` loads this module and must stay quick (docs/cli.md).


@contextmanager
def _open(settings: Settings) -> Iterator[tuple[PipelineConfig, Backend]]:
    from clickhouse.backend import open_backend
    from fresh.pipeline import load_pipeline_config

    cfg = load_pipeline_config(settings.pipeline_config)
    backend = open_backend(settings)
    try:
        yield cfg, backend
    finally:
        backend.close()


@click.group()
def clickhouse() -> None:
    """ClickHouse schema: ordered migrations, RAW from *_secure topics, MART, audit and verify.

    The backend is FRESH_CLICKHOUSE_BACKEND: "chdb" (embedded, at FRESH_CHDB_PATH; one process owns
    it, and its Kafka tables consume only while that process runs; while `ingest` runs, the other
    commands query through it) or "server".

    \b
    Examples:
      freshctl clickhouse plan
      freshctl clickhouse migrate
      freshctl clickhouse ingest --seconds 60   # embedded engine: consume while it runs
      freshctl clickhouse audit
      freshctl clickhouse verify -o json
    """


@clickhouse.command("plan")
@OUTPUT_OPTION
@click.option("--show-sql", is_flag=True, help="Also print the rendered SQL of pending migrations.")
@click.pass_obj
def plan_cmd(settings: Settings, output: str, show_sql: bool) -> None:
    """Show each migration and whether it is applied, pending or changed. Read-only.

    Exit 3 (drift) when a migration is pending or an applied one's file changed since; 0 when the
    database is what the migrations say.

    \b
    Examples:
      freshctl clickhouse plan
      freshctl clickhouse plan --show-sql
    """
    from clickhouse.migrate import migrations_for
    from clickhouse.migrate import plan as run_plan

    with _open(settings) as (cfg, backend):
        migrations = migrations_for(settings, cfg, backend, for_apply=False)
        rows = run_plan(backend, migrations, cfg.clickhouse.raw_database)
    print_rows([r.as_row() for r in rows], output)
    if show_sql:
        for m, r in zip(migrations, rows, strict=True):
            if r.status == "pending":
                click.echo(f"\n-- ==== {m.name} ====\n{m.sql}")
    pending = [r.name for r in rows if r.status == "pending"]
    changed = [r.name for r in rows if r.status == "changed"]
    if changed:
        raise DriftError(f"{len(changed)} applied migration(s) changed since they were applied "
                         f"({', '.join(changed)}); restore the file(s) and add a new migration instead")
    if pending:
        raise DriftError(f"{len(pending)} migration(s) pending ({', '.join(pending)}); "
                         "run `freshctl clickhouse migrate`")


@clickhouse.command("migrate")
@OUTPUT_OPTION
@click.option("--dry-run", is_flag=True, help="Print what would be applied; change nothing.")
@click.pass_obj
def migrate_cmd(settings: Settings, output: str, dry_run: bool) -> None:
    """Apply pending migrations in order; safe to re-run.

    Stops at the first failing statement and names the file and statement. Refuses to run
    while an applied migration's file was edited since (checksum).

    \b
    Examples:
      freshctl clickhouse migrate --dry-run
      freshctl clickhouse migrate
    """
    from clickhouse.migrate import migrate_settings

    with _open(settings) as (cfg, backend):
        rows = migrate_settings(settings, cfg, backend, dry_run=dry_run,
                                progress=lambda msg: None if output == "json" else click.echo(msg, err=True))
    if not rows:
        click.echo("nothing to apply: every migration is applied", err=True)
        return
    if dry_run:
        click.echo("dry run: would apply", err=True)
    print_rows([r.as_row() for r in rows], output)


@clickhouse.command("audit")
@OUTPUT_OPTION
@click.pass_obj
def audit_cmd(settings: Settings, output: str) -> None:
    """Prove every Kafka table reads only *_secure topics and no plaintext email/phone is stored.

    Reads system.tables for the Kafka engine tables' topics, then scans every string column of
    RAW and MART. Prints findings (never the matching values) and exits 1 if there are any.

    \b
    Example:
      freshctl clickhouse audit -o json
    """
    from clickhouse.audit import audit as run_audit
    from clickhouse.errors import AuditFindingError

    with _open(settings) as (cfg, backend):
        tables, findings = run_audit(backend, cfg)
    if output == "json":
        print_rows([{"kafka_tables": tables, "findings": [f.as_row() for f in findings]}], output)
    else:
        print_rows(tables, output)
        click.echo("")
        print_rows([f.as_row() for f in findings], output)
    if findings:
        raise AuditFindingError(f"audit found {len(findings)} finding(s); see above")
    click.echo("audit: ok (secure topics only, no plaintext email or phone)", err=True)


@clickhouse.command("verify")
@OUTPUT_OPTION
@click.pass_obj
def verify_cmd(settings: Settings, output: str) -> None:
    """Print row counts per layer, the data-quality stats and the validation rule counts.

    \b
    Example:
      freshctl clickhouse verify
    """
    from clickhouse.quality import layer_counts, quality_stats, validation_summary

    with _open(settings) as (cfg, backend):
        counts = layer_counts(backend, cfg)
        stats = quality_stats(backend, cfg)
        rules = validation_summary(backend, cfg)
    if output == "json":
        print_rows([{"layers": counts, "quality": stats, "validation": rules}], output)
        return
    for title, rows in (("layers", counts), ("quality", stats), ("validation", rules)):
        click.echo(f"== {title}")
        print_rows(rows, output)


@clickhouse.command("ingest")
@click.option("--seconds", type=float, default=None, help="Stop after this long. Default: run until SIGTERM/SIGINT.")
@click.option("--every", type=float, default=10.0, show_default=True, help="Print layer counts this often (s).")
@click.option("--dry-run", is_flag=True, help="Print the topics it would consume; open nothing.")
@click.pass_obj
def ingest_cmd(settings: Settings, seconds: float | None, every: float, dry_run: bool) -> None:
    """Hold the embedded engine open so its Kafka tables consume the _secure topics into RAW and MART.

    chdb's Kafka tables consume only while a process holds its session (a ClickHouse server
    consumes on its own: there this command only prints counts). Prints rows per layer as it goes.
    Meanwhile it answers the other commands' queries (verify, audit, status) on a local endpoint.

    \b
    Examples:
      freshctl clickhouse ingest                 # until Ctrl-C
      freshctl clickhouse ingest --seconds 60 --every 5
      freshctl clickhouse ingest --dry-run
    """
    from clickhouse.ingest import counts_line, run_ingest
    from fresh.pipeline import load_pipeline_config

    if dry_run:
        cfg = load_pipeline_config(settings.pipeline_config)
        topics = ", ".join(e.secure_topic for e in cfg.entities.values())
        click.echo(f"dry run: would consume {topics} from {settings.kafka_bootstrap} into "
                   f"{cfg.clickhouse.raw_database} ({settings.clickhouse_backend})")
        return
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _signum, _frame: stop.set())
    cfg = load_pipeline_config(settings.pipeline_config)
    run_ingest(settings, cfg, stop, seconds=seconds, every=every, on_counts=lambda rows: click.echo(counts_line(rows)))
