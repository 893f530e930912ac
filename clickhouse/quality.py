"""Row counts per layer and data-quality stats (`freshctl clickhouse verify`)."""

from __future__ import annotations

from clickhouse.backend import Backend, Row, quote
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


def freshness(backend: Backend, cfg: PipelineConfig) -> list[Row]:
    """Per entity: RAW and current MART rows, seconds since the newest row landed, and the median
    time from the source event (Debezium's source.ts_ms) to landing in RAW over the latest 1,000 rows."""
    raw, mart = cfg.clickhouse.raw_database, cfg.clickhouse.mart_database
    out = []
    for e in cfg.entities.values():
        r = backend.query(
            f"SELECT (SELECT count() FROM {raw}.{e.name}) AS raw_rows, "
            f"(SELECT count() FROM {mart}.{e.name} FINAL WHERE NOT is_deleted) AS mart_rows, "
            f"(SELECT if(count() = 0, -1, dateDiff('millisecond', max(ingested_at), now64(3)) / 1000) "
            f"FROM {raw}.{e.name}) AS newest_age_s, "
            f"(SELECT if(count() = 0, -1, quantile(0.5)(toUnixTimestamp64Milli(ingested_at) - source_ts_ms) / 1000) "
            f"FROM (SELECT ingested_at, source_ts_ms FROM {raw}.{e.name} ORDER BY ingested_at DESC LIMIT 1000)) "
            f"AS e2e_p50_s, "
            f"(SELECT count() FROM {raw}.kafka_errors WHERE entity = {quote(e.name)}) AS stream_errors, "
            f"(SELECT any(error) FROM (SELECT error FROM {raw}.kafka_errors WHERE entity = {quote(e.name)} "
            f"ORDER BY ingested_at DESC LIMIT 1)) AS last_stream_error"
        )[0]
        out.append({"entity": e.name, **r})
    return out


def mart_keys(backend: Backend, cfg: PipelineConfig, entity: str) -> list[str]:
    """The business keys MART holds for `entity` now (current versions, deletes excluded), sorted."""
    e = cfg.entity(entity)
    rows = backend.query(f"SELECT toString({e.business_key}) AS id FROM {cfg.clickhouse.mart_database}.{e.name} FINAL "
                         "WHERE NOT is_deleted ORDER BY id")
    return [str(r["id"]) for r in rows]
