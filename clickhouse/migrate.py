"""Apply the rendered migrations in order, recording each in a ledger table.

- `plan` is read-only: it never creates the ledger, it only reads it when it exists.
- `migrate` applies what is pending and is safe to re-run (applied names are skipped; DDL uses
  IF NOT EXISTS so a migration that failed half-way can be re-run after the fix). It stops at
  the first failing statement, naming file and statement, and refuses to run at all while an
  applied migration's file differs from the one applied (checksum).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from clickhouse.backend import Backend, quote
from clickhouse.errors import ClickHouseError, MigrationChangedError, MigrationError
from clickhouse.render import Migration, render_migrations
from fresh.errors import ConfigError
from fresh.pipeline import PipelineConfig
from fresh.settings import Settings

log = logging.getLogger(__name__)

LEDGER_TABLE = "schema_migrations"


@dataclass(frozen=True)
class PlanRow:
    name: str
    status: str  # applied | pending | skip (server only) | skipped | changed
    statements: int
    checksum: str

    def as_row(self) -> dict[str, object]:
        return {"migration": self.name, "status": self.status, "statements": self.statements,
                "checksum": self.checksum[:12]}


def ledger_name(database: str) -> str:
    return f"{database}.{LEDGER_TABLE}"


def read_ledger(backend: Backend, database: str) -> dict[str, dict[str, str]]:
    """Applied (or skipped) migrations by name; empty when the ledger does not exist yet."""
    exists = backend.query(
        f"SELECT count() AS n FROM system.tables WHERE database = {quote(database)} AND name = {quote(LEDGER_TABLE)}"
    )
    if not exists or int(exists[0]["n"]) == 0:
        return {}
    rows = backend.query(
        f"SELECT name, argMax(checksum, applied_at) AS checksum, argMax(status, applied_at) AS status "
        f"FROM {ledger_name(database)} GROUP BY name"
    )
    return {r["name"]: {"checksum": r["checksum"], "status": r["status"]} for r in rows}


def ensure_ledger(backend: Backend, database: str) -> None:
    backend.execute(f"CREATE DATABASE IF NOT EXISTS {database}")
    backend.execute(
        f"CREATE TABLE IF NOT EXISTS {ledger_name(database)} ("
        "name String, checksum String, status LowCardinality(String), backend LowCardinality(String), "
        "statements UInt32, applied_at DateTime64(3) DEFAULT now64(3)"
        ") ENGINE = MergeTree ORDER BY (name, applied_at)"
    )


def plan(backend: Backend, migrations: list[Migration], database: str) -> list[PlanRow]:
    """What `migrate` would do, without writing anything."""
    ledger = read_ledger(backend, database)
    rows = []
    for m in migrations:
        entry = ledger.get(m.name)
        if entry is None:
            status = "skip (server only)" if m.server_only and not backend.supports_access_control else "pending"
        elif entry["checksum"] != m.checksum:
            status = "changed"
        else:
            status = entry["status"]
        rows.append(PlanRow(m.name, status, len(m.statements), m.checksum))
    return rows


def migrate(
    backend: Backend,
    migrations: list[Migration],
    database: str,
    *,
    dry_run: bool = False,
    progress: Callable[[str], None] = lambda _msg: None,
) -> list[PlanRow]:
    """Apply every pending migration in order; return the rows acted on (or that would be)."""
    rows = plan(backend, migrations, database)
    changed = [r.name for r in rows if r.status == "changed"]
    if changed:
        raise MigrationChangedError(
            f"applied migration(s) {', '.join(changed)} were edited since they were applied (checksum differs); "
            "restore the file and add the change as a new migration file"
        )
    todo = [(m, r) for m, r in zip(migrations, rows, strict=True) if r.status in ("pending", "skip (server only)")]
    if dry_run or not todo:
        return [r for _m, r in todo]
    ensure_ledger(backend, database)
    done = []
    for m, r in todo:
        if r.status == "pending":
            for i, stmt in enumerate(m.statements, start=1):
                try:
                    backend.execute(stmt)
                except ClickHouseError as exc:
                    first = next((ln.strip() for ln in stmt.splitlines() if not ln.strip().startswith("--")), "")
                    raise MigrationError(
                        f"{m.path.name}: statement {i} of {len(m.statements)} failed ({first[:100]}): {exc}; "
                        "nothing after it was applied; fix the file and re-run migrate"
                    ) from None
            status = "applied"
        else:
            status = "skipped"
        backend.execute(
            f"INSERT INTO {ledger_name(database)} (name, checksum, status, backend, statements) VALUES "
            f"({quote(m.name)}, {quote(m.checksum)}, {quote(status)}, {quote(backend.kind)}, {len(m.statements)})"
        )
        log.info("migration=%s status=%s statements=%d backend=%s", m.name, status, len(m.statements), backend.kind)
        progress(f"{m.name}: {status} ({len(m.statements)} statements)")
        done.append(PlanRow(m.name, status, len(m.statements), m.checksum))
    return done


def migrations_for(settings: Settings, cfg: PipelineConfig, backend: Backend, *, for_apply: bool) -> list[Migration]:
    """The migrations rendered for these settings: the broker to read, and the dashboard user's
    password hash (server backends, which need it to apply)."""
    password = settings.clickhouse_dashboard_password.get_secret_value()
    if for_apply and backend.supports_access_control and not password:
        raise ConfigError(
            "FRESH_CLICKHOUSE_DASHBOARD_PASSWORD is empty; the read-only dashboard user needs a password "
            "(set it in the environment, never in a file of this repo)"
        )
    digest = hashlib.sha256(password.encode()).hexdigest() if password else ""
    return render_migrations(cfg, settings.kafka("clickhouse"), dashboard_password_sha256=digest)


def migrate_settings(
    settings: Settings,
    cfg: PipelineConfig,
    backend: Backend,
    *,
    dry_run: bool = False,
    progress: Callable[[str], None] = lambda _msg: None,
) -> list[PlanRow]:
    """`migrate` with the migrations rendered for `settings` (what `freshctl clickhouse migrate` and
    `freshctl up` run)."""
    migrations = migrations_for(settings, cfg, backend, for_apply=not dry_run)
    return migrate(backend, migrations, cfg.clickhouse.raw_database, dry_run=dry_run, progress=progress)
