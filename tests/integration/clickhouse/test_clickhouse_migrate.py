"""Migrations against the embedded engine: idempotent, checksum-guarded, failing loudly."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from clickhouse.backend import ChdbBackend
from clickhouse.errors import MigrationChangedError, MigrationError
from clickhouse.migrate import engine_settings, migrate, plan, retune
from clickhouse.quality import layer_counts
from clickhouse.render import MIGRATIONS_DIR, render_migrations
from fresh.pipeline import PipelineConfig
from fresh.settings import Settings
from fresh.wait import wait_until
from stack.kafka_security import engine_connection
from tests import secure_records as sr


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


def test_retune_recreates_kafka_tables_whose_knobs_changed_and_they_stream_on(
    chdb_backend: ChdbBackend, pipeline: PipelineConfig, settings: Settings, unique: str
) -> None:
    cfg = pipeline.isolated(f"tune{unique}")
    bootstrap = engine_connection(settings, cfg)
    migrate(chdb_backend, render_migrations(cfg, bootstrap), cfg.clickhouse.raw_database)
    assert retune(chdb_backend, cfg, bootstrap) == []  # 009 created them as the config says
    raw = cfg.model_dump(mode="json")
    raw["clickhouse"]["flush_interval_ms"] = cfg.clickhouse.flush_interval_ms + 123
    tuned = PipelineConfig.model_validate(raw)
    queues = [f"{cfg.clickhouse.raw_database}.{name}_queue" for name in cfg.entities]

    def flush_of(table: str) -> str:
        db, name = table.split(".")
        (row,) = chdb_backend.query(f"SELECT engine_full FROM system.tables WHERE database = '{db}' "
                                    f"AND name = '{name}'")
        return engine_settings(str(row["engine_full"]))["kafka_flush_interval_ms"]

    assert retune(chdb_backend, tuned, bootstrap, dry_run=True) == queues
    assert {flush_of(t) for t in queues} == {str(cfg.clickhouse.flush_interval_ms)}  # dry run: untouched
    lines: list[str] = []
    assert retune(chdb_backend, tuned, bootstrap, progress=lines.append) == queues
    old, new = cfg.clickhouse.flush_interval_ms, tuned.clickhouse.flush_interval_ms
    assert f"kafka_flush_interval_ms {old} -> {new}" in lines[0]
    assert {flush_of(t) for t in queues} == {str(tuned.clickhouse.flush_interval_ms)}
    assert retune(chdb_backend, tuned, bootstrap) == []

    # the re-created table still feeds RAW and MART through the views (the admin user writes:
    # the engine's own user may only read the _secure topics)
    producer = sr.SecureProducer(settings.kafka("admin"))
    producer.send(cfg.entity("stores").secure_topic, sr.store("S001", 1_763_000_000_001))
    producer.flush()

    def landed() -> bool:
        counts = {r["entity"]: r for r in layer_counts(chdb_backend, cfg)}
        return counts["stores"]["raw_rows"] == 1 and counts["stores"]["mart_current"] == 1

    wait_until(landed, timeout_s=120, what=f"the store in RAW and MART of {cfg.clickhouse.raw_database}")
