"""`freshctl up | status | down`: the whole local pipeline. Parses, calls stack.pipeline and
stack.health, prints."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from fresh import progress
from fresh.output import OUTPUT_OPTION, print_rows
from stack.cli import CONNECT_WORKERS_OPTION

if TYPE_CHECKING:
    from fresh.settings import Settings

# stack.pipeline (every driver) is imported inside each command: `freshctl --help` and a TAB stay quick.

log = logging.getLogger(__name__)


def _progress() -> Callable[[str], None]:
    """Each step's line with the elapsed time, on a terminal; in the log (INFO) otherwise."""
    t0 = time.monotonic()
    if not progress.enabled():
        return lambda line: log.info("up %s", line)
    return lambda line: click.echo(f"[{time.monotonic() - t0:6.1f}s] {line}", err=True)


@click.command("up")
@click.option("--no-seed", is_flag=True, help="Do not seed MongoDB (by default: the default seed, into an empty "
                                               "database only).")
@click.option("--seed", "seed_value", type=int, default=42, show_default=True, help="Generator seed.")
@click.option("--changes", type=click.IntRange(min=0), default=0, show_default=True,
              help="Keep the generator's change mode running for N changes (a supervised service).")
@click.option("--rate", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Change mode: changes per second.")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait until MART holds what MongoDB holds (the check), or not.")
@click.option("--timeout", "timeout_s", type=float, default=300.0, show_default=True,
              help="Seconds to wait for MART to hold what MongoDB holds.")
@CONNECT_WORKERS_OPTION
@click.option("--dry-run", is_flag=True, help="Show each step and whether it would start or reuse; change nothing.")
@OUTPUT_OPTION
@click.pass_obj
def up_command(settings: Settings, no_seed: bool, seed_value: int, changes: int, rate: float, wait: bool,
               timeout_s: float, connect_workers: int | None, dry_run: bool, output: str) -> None:
    """Bring the whole local pipeline up and check it.

    Stack, keyring, ClickHouse schema, connectors,
    the PII processor and the ClickHouse ingest (supervised background services), the default
    seed, then wait until MART holds what MongoDB holds and print a summary.

    Reuses whatever already runs: a second `up` takes seconds. Stop it all with `freshctl down`.

    \b
    Examples:
      freshctl up
      freshctl up --changes 100000 --rate 50     # keep changes flowing; watch with `freshctl status`
      freshctl up --no-seed
      freshctl up --connect-workers 2            # Kafka Connect as two workers of one group
      freshctl up --dry-run
    """
    from stack import pipeline as pipeline_mod

    if connect_workers is not None:
        settings = settings.model_copy(update={"connect_workers": connect_workers})

    opts = pipeline_mod.UpOptions(seed=not no_seed, seed_value=seed_value, changes=changes, rate=rate,
                                  timeout_s=timeout_s, environment=settings.environment, wait=wait)
    if dry_run:
        print_rows(pipeline_mod.plan_up(settings, opts), output)
        return
    result = pipeline_mod.up(settings, opts, _progress())
    summary = result.summary
    assert summary is not None
    if output == "json":
        print_rows([{"seconds": round(result.seconds, 1), "started": result.started, "reused": result.reused,
                     "keyring": result.keyring, "layers": summary.layers, "dlq_records": summary.dlq_records,
                     "audit_findings": summary.audit_findings, "audit_sampled": summary.audit_sampled,
                     "snapshots": [str(s.html) for s in summary.snapshots]}], output)
        return
    print_rows(summary.rows(), output)
    sample = (f" in a random sample of {pipeline_mod.SUMMARY_AUDIT_ROWS:,} rows per table; "
              "`freshctl clickhouse audit` reads every row") if summary.audit_sampled else ""
    audit = f"ok (secure topics only, no plaintext email or phone{sample})" if not summary.audit_findings \
        else f"{len(summary.audit_findings)} finding(s): run `freshctl clickhouse audit`"
    click.echo(f"dlq: {summary.dlq_records} record(s)   audit: {audit}")
    click.echo(summary.snapshot_note(time.time()))
    click.echo(f"pipeline up in {result.seconds:.1f}s (started: {', '.join(result.started) or '-'}; "
               f"reused: {', '.join(result.reused) or '-'}). Next: `freshctl status`, `freshctl down`")


@click.command("status")
@OUTPUT_OPTION
@click.pass_obj
def status_command(settings: Settings, output: str) -> None:
    """Every stage's health and lag, in one table.

    One row per stage: services (PID, uptime, restarts), connectors and tasks, CDC -> _secure and
    _secure -> ClickHouse lag per topic, freshness per entity, DLQ records, the latest error.
    Unhealthy rows first; exit 0 when every row is healthy, 1 when not.

    \b
    Examples:
      freshctl status
      freshctl status -o json
    """
    from fresh.pipeline import load_pipeline_config
    from stack.health import PipelineUnhealthyError, pipeline_status

    rows = pipeline_status(settings, load_pipeline_config(settings.pipeline_config))
    print_rows([r.row() for r in rows], output, ["stage", "component", "healthy", "state", "detail", "error"])
    bad = [r for r in rows if not r.healthy]
    if bad:
        raise PipelineUnhealthyError(f"{len(bad)} of {len(rows)} stage row(s) unhealthy (listed first)")


@click.command("down")
@click.option("--wipe", is_flag=True, help="Also delete the pipeline's local state together: Kafka data, configs "
                                            "and the chdb folder (jars and the keyring stay).")
@click.option("--dry-run", is_flag=True, help="Show what would be stopped; stop nothing.")
@click.pass_obj
def down_command(settings: Settings, wipe: bool, dry_run: bool) -> None:
    """Stop everything `freshctl up` started (by PID), and nothing else; no process is left behind.

    \b
    Examples:
      freshctl down
      freshctl down --wipe     # start from nothing next time
    """
    from stack import pipeline as pipeline_mod

    if dry_run:
        from stack.services import LocalStack

        local = LocalStack(settings)
        running = [n for n in [*local.supervised, *local.services] if local.pid_of(n)]
        click.echo(f"would stop: {', '.join(running) or 'nothing'}" + (" and wipe local state" if wipe else ""))
        return
    stopped = pipeline_mod.down(settings, wipe=wipe)
    click.echo(f"stopped: {', '.join(stopped) or 'nothing was running'}" + ("; local state wiped" if wipe else ""))
