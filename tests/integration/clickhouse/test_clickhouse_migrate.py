"""Migrations against the embedded engine: idempotent, checksum-guarded, failing loudly."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from clickhouse.backend import ChdbBackend
from clickhouse.errors import MigrationChangedError, MigrationError
from clickhouse.migrate import migrate, plan
from clickhouse.render import MIGRATIONS_DIR, render_migrations
from fresh.pipeline import PipelineConfig
from fresh.settings import Settings
from stack.kafka_security import engine_connection


def test_migrate_twice_second_run_does_nothing(
    chdb_backend: ChdbBackend, migrated_config: PipelineConfig, settings: Settings
) -> None:
    cfg = migrated_config
    migrations = render_migrations(cfg, engine_connection(settings, cfg))
    assert migrate(chdb_backend, migrations, cfg.clickhouse.raw_database) == []
    statuses = {r.name: r.status for r in plan(chdb_backend, migrations, cfg.clickhouse.raw_database)}
    assert statuses["007_readonly_access"] == "skipped"  # chdb has no users or grants
    assert {s for n, s in statuses.items() if n != "007_readonly_access"} == {"applied"}
    ledger = chdb_backend.query(f"SELECT count() AS n FROM {cfg.clickhouse.raw_database}.schema_migrations")
    assert int(ledger[0]["n"]) == len(migrations)


def test_plan_is_read_only(chdb_backend: ChdbBackend, unique_pipeline: PipelineConfig, settings: Settings) -> None:
    cfg = unique_pipeline
    rows = plan(chdb_backend, render_migrations(cfg, engine_connection(settings, cfg)), cfg.clickhouse.raw_database)
    assert {r.status for r in rows} == {"pending", "skip (server only)"}
    dbs = chdb_backend.query(f"SELECT count() AS n FROM system.databases WHERE name = '{cfg.clickhouse.raw_database}'")
    assert int(dbs[0]["n"]) == 0


def test_edited_applied_migration_is_refused(
    chdb_backend: ChdbBackend, migrated_config: PipelineConfig, settings: Settings, tmp_path: Path
) -> None:
    cfg = migrated_config
    edited = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, edited)
    target = edited / "002_raw_tables.sql.j2"
    target.write_text(target.read_text() + "\n-- an edit after it was applied\n")
    migrations = render_migrations(cfg, engine_connection(settings, cfg), directory=edited)
    statuses = {r.name: r.status for r in plan(chdb_backend, migrations, cfg.clickhouse.raw_database)}
    assert statuses["002_raw_tables"] == "changed"
    with pytest.raises(MigrationChangedError, match="002_raw_tables"):
        migrate(chdb_backend, migrations, cfg.clickhouse.raw_database)


def test_failure_names_file_and_statement_and_is_not_recorded(
    chdb_backend: ChdbBackend, migrated_config: PipelineConfig, settings: Settings, tmp_path: Path
) -> None:
    cfg = migrated_config
    broken = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, broken)
    (broken / "099_broken.sql.j2").write_text(
        "CREATE TABLE IF NOT EXISTS {{ raw_db }}.before_failure (x UInt8) ENGINE = Memory;\n"
        "SELECT * FROM {{ raw_db }}.no_such_table;\n"
        "CREATE TABLE IF NOT EXISTS {{ raw_db }}.after_failure (x UInt8) ENGINE = Memory;\n"
    )
    migrations = render_migrations(cfg, engine_connection(settings, cfg), directory=broken)
    with pytest.raises(MigrationError, match=r"099_broken\.sql\.j2: statement 2 of 3"):
        migrate(chdb_backend, migrations, cfg.clickhouse.raw_database)
    tables = {r["name"] for r in chdb_backend.query(
        f"SELECT name FROM system.tables WHERE database = '{cfg.clickhouse.raw_database}'")}
    assert "before_failure" in tables and "after_failure" not in tables
    statuses = {r.name: r.status for r in plan(chdb_backend, migrations, cfg.clickhouse.raw_database)}
    assert statuses["099_broken"] == "pending"
