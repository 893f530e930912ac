"""ClickHouse integration fixtures: one embedded engine (chdb) session for this package, in a
temporary folder (chdb allows one session per process), and pipeline configs with unique
topics, consumer group and databases per run."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from clickhouse.backend import ChdbBackend
from clickhouse.migrate import migrate
from clickhouse.render import render_migrations
from fresh.pipeline import PipelineConfig
from fresh.settings import Settings
from stack.kafka_security import grant_pipeline_acls


def unique_config(pipeline: PipelineConfig, tag: str) -> PipelineConfig:
    """The repo's pipeline config with every name that could collide made unique."""
    return pipeline.isolated(f"ch{tag}")


@pytest.fixture(scope="package")
def chdb_backend(chdb_path: str) -> Iterator[ChdbBackend]:
    backend = ChdbBackend(Path(chdb_path))
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def make_unique_config() -> Callable[[PipelineConfig, str], PipelineConfig]:
    """`unique_config` for fixtures wider than a function (where `unique` is not available)."""
    return unique_config


@pytest.fixture
def unique_pipeline(pipeline: PipelineConfig, unique: str) -> PipelineConfig:
    """The pipeline config with unique names, not migrated."""
    return unique_config(pipeline, unique)


@pytest.fixture(scope="package")
def migrated_config(chdb_backend: ChdbBackend, pipeline: PipelineConfig, settings: Settings,
                    new_tag: Callable[[], str]) -> PipelineConfig:
    """One migrated pipeline (unique names) shared by the schema tests of this package.

    Shared rather than one per test: each migration adds four Kafka tables whose consumers hold
    the engine's message-broker threads, and chdb 26.1 hangs on DROP of a materialized view
    over a streaming Kafka table, so they cannot be dropped after each test.
    """
    cfg = unique_config(pipeline, new_tag())
    grant_pipeline_acls(settings, cfg)  # the engine reads as its own user, pf-clickhouse
    migrate(chdb_backend, render_migrations(cfg, settings.kafka("clickhouse")), cfg.clickhouse.raw_database)
    return cfg
