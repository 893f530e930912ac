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
import re
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import SecretStr

from clickhouse.backend import Backend, quote
from clickhouse.cluster import cluster_statements
from clickhouse.errors import ClickHouseError, MigrationChangedError, MigrationError
from clickhouse.render import KafkaTuning, Migration, queue_ddl, queue_settings, render_migrations
from fresh.errors import ConfigError
from fresh.kafka_connection import KafkaConnection
from fresh.pipeline import PipelineConfig
from fresh.settings import Settings

log = logging.getLogger(__name__)

LEDGER_TABLE = "schema_migrations"
TUNING_MIGRATION = "009_kafka_tuning"  # from this one on, the Kafka tables follow the pipeline config
HIDDEN = "[HIDDEN]"  # how ClickHouse shows a Kafka table's password (SHOW CREATE TABLE, system.tables)
_SETTING = re.compile(r"(\w+) = ('(?:[^'\\]|\\.)*'|[^,]+)")


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
    if cfg.clickhouse.cluster and backend.kind == "chdb":
        raise ConfigError(f"clickhouse.cluster is {cfg.clickhouse.cluster!r}, but the embedded engine is one node; "
                          "unset it, or set FRESH_CLICKHOUSE_BACKEND=server and a cluster node (docs/scaling.md)")
    password = settings.clickhouse_dashboard_password.get_secret_value()
    if for_apply and backend.supports_access_control and not password:
        raise ConfigError(
            "FRESH_CLICKHOUSE_DASHBOARD_PASSWORD is empty; the read-only dashboard user needs a password "
            "(set it in the environment, never in a file of this repo)"
        )
    digest = hashlib.sha256(password.encode()).hexdigest() if password else ""
    kafka = settings.kafka("clickhouse")
    if not for_apply:  # a plan or dry run needs no Kafka password: it shows as ClickHouse shows it
        kafka = kafka.model_copy(update={"password": SecretStr(HIDDEN)})
    return render_migrations(cfg, kafka, dashboard_password_sha256=digest)


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
    rows = migrate(backend, migrations, cfg.clickhouse.raw_database, dry_run=dry_run, progress=progress)
    retune(backend, cfg, settings.kafka("clickhouse"), dry_run=dry_run, progress=progress)
    return rows


def engine_settings(engine_full: str) -> dict[str, str]:
    """`name = literal` pairs of a `system.tables.engine_full` value's SETTINGS clause."""
    return dict(_SETTING.findall(engine_full.partition(" SETTINGS ")[2]))


def retune(
    backend: Backend,
    cfg: PipelineConfig,
    kafka: KafkaConnection | str,
    *,
    dry_run: bool = False,
    progress: Callable[[str], None] = lambda _msg: None,
) -> list[str]:
    """Re-create each Kafka engine table whose live settings differ from the pipeline config and
    the engine's connection (a latency knob, the consumer count, the brokers or the user changed
    since migration 009 created it). ClickHouse cannot ALTER a Kafka table's settings; its views
    stay and its offsets are in Kafka, so nothing is skipped. The password is not compared: ClickHouse
    shows it as '[HIDDEN]' (docs/security.md). Returns the tables re-created (or that would be)."""
    if read_ledger(backend, cfg.clickhouse.raw_database).get(TUNING_MIGRATION, {}).get("status") != "applied":
        return []
    tuning = KafkaTuning.from_config(cfg)
    done = []
    for entity in cfg.entities:
        table = f"{cfg.clickhouse.raw_database}.{entity}_queue"
        rows = backend.query(f"SELECT engine_full FROM system.tables WHERE database = "
                             f"{quote(cfg.clickhouse.raw_database)} AND name = {quote(entity + '_queue')}")
        if not rows:
            continue
        live = engine_settings(str(rows[0]["engine_full"]))
        want = queue_settings(cfg, entity, kafka, tuning)
        changed = [f"{k} {live.get(k, '(default)')} -> {v}" for k, v in want.items()
                   if k != "kafka_sasl_password" and live.get(k) != v]
        if not changed:
            continue
        progress(f"{table}: {'would re-create' if dry_run else 're-created'} for {', '.join(changed)}")
        if not dry_run:
            statements = [f"DROP TABLE IF EXISTS {table}", queue_ddl(cfg, entity, kafka, tuning)]  # no SYNC:
            if cfg.clickhouse.cluster:  # it hangs on chdb 26.1
                statements = cluster_statements(statements, cfg.clickhouse.cluster)
            for statement in statements:
                backend.execute(statement)
            log.info("retuned table=%s changed=%s", table, ";".join(changed))
        done.append(table)
    return done
