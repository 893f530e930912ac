"""`freshctl seed`: parse, call the generator, print. Everything worth testing lives outside."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fresh import progress
from fresh.output import OUTPUT_OPTION, print_rows

if TYPE_CHECKING:
    from fresh.settings import Settings

# Faker and pymongo are imported inside the command: a TAB in `freshctl seed ...` must stay quick.


@click.command("seed")
@click.option("--seed", "seed_value", type=int, default=42, show_default=True,
              help="Random seed: the same seed gives byte-identical documents.")
@click.option("--scale", type=click.IntRange(min=1), default=1, show_default=True,
              help="Multiplies customers (175 each) and purchases (1000 each); stores and products stay 45 and 100.")
@click.option("--locale", default="ru_RU", show_default=True, help="Faker locale for people and places.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Documents per unordered bulk write.")
@click.option("--workers", type=click.IntRange(min=1, max=16), default=2, show_default=True,
              help="Bulk writes in flight at once.")
@click.option("--changes", type=click.IntRange(min=0), default=0, show_default=True,
              help="Change mode: perform N inserts/updates/deletes on seeded data instead of seeding.")
@click.option("--rate", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Change mode: operations per second (0 = as fast as possible).")
@click.option("--export", "export_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Also write the documents as JSON Lines, one <collection>.jsonl per collection.")
@click.option("--no-mongo", is_flag=True, help="With --export: write the files only, not MongoDB.")
@click.option("--database", "database_name", help="MongoDB database (default: mongodb.database of pipeline.yaml).")
@click.option("--dry-run", is_flag=True, help="Print what would be written and write nothing.")
@OUTPUT_OPTION
@click.pass_obj
def seed_command(settings: Settings, seed_value: int, scale: int, locale: str, batch_size: int, workers: int,
                 changes: int, rate: float, export_dir: Path | None, no_mongo: bool, database_name: str | None,
                 dry_run: bool, output: str) -> None:
    """Seed MongoDB with deterministic ProbablyFresh data, or stream changes to it.

    Seeding upserts by business key: running it again with the same seed changes nothing and
    creates no duplicates. Business-key indexes are created if missing.

    \b
    Examples:
      freshctl seed                              # 45 stores, 100 products, 175 customers, 1000 purchases
      freshctl seed --seed 7 --scale 100         # 17,500 customers and 100,000 purchases
      freshctl seed --export out/ --no-mongo     # JSON Lines files only
      freshctl seed --changes 500 --rate 20      # 500 changes at 20 per second, for CDC demos
      freshctl seed --scale 10 --dry-run -o json
    """
    from fresh.pipeline import load_pipeline_config
    from generator.changes import KINDS, planned_counts, run_changes
    from generator.domain import Plan
    from generator.seed import ENTITIES, check_config, seed_database, seed_targets

    config = load_pipeline_config(settings.pipeline_config)
    check_config(config)
    plan = Plan(seed=seed_value, scale=scale, locale=locale)
    db_name = database_name or config.mongodb.database
    if no_mongo and not export_dir:
        raise click.UsageError("--no-mongo needs --export DIR (otherwise nothing would be written)")
    if changes and (export_dir or no_mongo):
        raise click.UsageError("--changes writes to MongoDB only; drop --export/--no-mongo")

    if changes:
        if dry_run:
            rows: list[dict[str, Any]] = [{"kind": k, "operations": n} for k, n in planned_counts(changes).items()]
            click.echo(f"dry run: would perform {changes} changes on {db_name} at {rate:g}/s", err=True)
            print_rows(rows, output)
            return
        with progress.bar("changes", changes) as bar:
            changed = run_changes(settings, config, plan, changes, rate, database_name=db_name,
                                  progress=lambda _kind: bar.update(1))
        print_rows([{"kind": k, "operations": changed.counts[k]} for k in KINDS], output)
        click.echo(f"{sum(changed.counts.values())} changes in {changed.seconds:.1f}s ({changed.rate:.1f}/s)",
                   err=True)
        return

    counts = plan.counts
    targets = seed_targets(db_name, export_dir, not no_mongo)
    if dry_run:
        click.echo(f"dry run: would write to {', '.join(targets)}", err=True)
        print_rows([{"entity": e, "collection": config.entity(e).collection, "documents": counts[e]}
                    for e in ENTITIES], output)
        return

    with progress.bar("seeding", sum(counts.values())) as bar:
        report = seed_database(settings, config, plan, database_name=db_name, export_dir=export_dir,
                               to_mongo=not no_mongo, batch_size=batch_size, workers=workers,
                               progress=lambda _e, n: bar.update(n))
    print_rows([{"entity": e, "collection": config.entity(e).collection, "documents": report.counts[e]}
                for e in ENTITIES], output)
    total = sum(report.counts.values())
    click.echo(f"{total} documents to {', '.join(targets)} in {report.seconds:.1f}s "
               f"({total / max(report.seconds, 1e-9):.0f}/s)", err=True)
