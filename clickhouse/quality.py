"""Row counts per layer and data-quality stats (`freshctl clickhouse verify`)."""

from __future__ import annotations

from clickhouse.backend import Backend, Row
from fresh.pipeline import PipelineConfig


def layer_counts(backend: Backend, cfg: PipelineConfig) -> list[Row]:
    """Per entity: RAW rows, MART rows (all versions and current), rejects (one per broken rule),
    rejected messages, broken messages and unexpected payload fields (schema drift, rows kept)."""
    raw, mart = cfg.clickhouse.raw_database, cfg.clickhouse.mart_database
    rows = []
    for e in cfg.entities.values():
        r = backend.query(
            f"SELECT (SELECT count() FROM {raw}.{e.name}) AS raw_rows, "
            f"(SELECT count() FROM {mart}.{e.name}) AS mart_versions, "
            f"(SELECT count() FROM {mart}.{e.name} FINAL) AS mart_current, "
            f"(SELECT count() FROM {mart}.rejects WHERE entity = '{e.name}') AS rejects, "
            f"(SELECT uniqExact(_topic, _partition, _offset) FROM {mart}.rejects WHERE entity = '{e.name}') "
            f"AS rejected_messages, "
            f"(SELECT count() FROM {mart}.schema_drift WHERE entity = '{e.name}') AS drift_fields, "
            f"(SELECT count() FROM {raw}.kafka_errors WHERE entity = '{e.name}') AS errors"
        )[0]
        rows.append({"entity": e.name, **{k: int(v) for k, v in r.items()}})
    return rows


def quality_stats(backend: Backend, cfg: PipelineConfig) -> list[Row]:
    return backend.query(f"SELECT * FROM {cfg.clickhouse.mart_database}.quality_stats ORDER BY entity")


def validation_summary(backend: Backend, cfg: PipelineConfig) -> list[Row]:
    return backend.query(
        f"SELECT * FROM {cfg.clickhouse.mart_database}.validation_summary ORDER BY entity, action, rule"
    )
