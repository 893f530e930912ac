"""`freshctl status`: one row per stage of the pipeline, healthy or not, with the why.

Stages: the stack's services and the supervised pipeline services (up, PID, uptime, restarts),
each connector and its tasks, CDC -> `_secure` lag per topic (the PII processor group's committed
offsets against the high watermarks), `_secure` -> ClickHouse lag per topic (the ClickHouse
consumer groups), freshness per entity, and the DLQ. Every collector turns its own failure into
an unhealthy row: a status command that crashes when something is down would be no use.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from clickhouse.backend import open_backend
from clickhouse.endpoint import read_owner
from clickhouse.quality import freshness
from connectors.connect_api import ConnectApi
from fresh.clients import count_records, group_lag
from fresh.errors import FreshError
from fresh.kafka_connection import KafkaConnection
from fresh.pipeline import PipelineConfig
from fresh.settings import Settings
from stack.services import LocalStack
from stack.supervisor import last_error_line, read_state

log = logging.getLogger(__name__)

MAX_LAG = 10_000  # records behind before a hop counts as unhealthy (a burst drains; a stuck stage does not)


class PipelineUnhealthyError(FreshError):
    """`freshctl status` found an unhealthy stage (exit 1)."""


@dataclass
class StageRow:
    stage: str
    component: str
    healthy: bool
    state: str
    detail: str = ""
    error: str = ""

    def row(self) -> dict[str, Any]:
        out = asdict(self)
        out["healthy"] = "ok" if self.healthy else "UNHEALTHY"
        return out


def _uptime(started_at: float | None) -> str:
    if not started_at:
        return "-"
    s = int(time.time() - started_at)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def service_rows(stack: LocalStack) -> list[StageRow]:
    rows = []
    for svc in stack.status():
        name = str(svc["service"])
        if name in stack.supervised or name == "clickhouse":
            continue
        healthy = svc["state"] == "ready"
        error = "" if healthy else last_error_line(stack.log_file(name))
        rows.append(StageRow("service", name, healthy, str(svc["state"]), f"pid={svc['pid'] or '-'}", error))
    for name in stack.supervised:
        state = read_state(stack, name)
        pid = stack.pid_of(name)
        if name == "changes" and not state:
            continue  # change mode is optional: no row until `up --changes` ran it
        if pid:
            shown = str(state.get("state", "starting"))
        else:  # a supervisor that gave up or whose worker finished exits: its state file says which
            shown = str(state.get("state")) if state.get("state") in ("failed", "finished") else "stopped"
        healthy = shown in ("running", "finished")
        up = _uptime(state.get("started_at")) if shown == "running" else "-"
        detail = f"pid={state.get('pid') or '-'} up={up} restarts={state.get('restarts', 0)}"
        error = str(state.get("last_error") or "")
        if not healthy and not error:
            error = "not running; `freshctl up` starts it"
        rows.append(StageRow("service", name, healthy, shown, detail, error))
    return rows


def connector_rows(settings: Settings, cfg: PipelineConfig) -> list[StageRow]:
    api = ConnectApi.from_settings(settings)
    live = api.list_with_status()
    rows = []
    wanted = cfg.kafka.connector_name
    if wanted not in live:
        rows.append(StageRow("connector", wanted, False, "missing", "", "not registered; `freshctl up` applies it"))
    for name, entry in sorted(live.items()):
        status = entry.get("status", {})
        state = status.get("connector", {}).get("state", "?")
        tasks = status.get("tasks", [])
        task_states = [f"{t.get('id')}:{t.get('state')}" for t in tasks]
        healthy = state == "RUNNING" and bool(tasks) and all(t.get("state") == "RUNNING" for t in tasks)
        trace = next((str(t.get("trace") or "") for t in [status.get("connector", {}), *tasks]
                      if t.get("state") == "FAILED"), "")
        rows.append(StageRow("connector", name, healthy, state, f"tasks {' '.join(task_states) or 'none'}",
                             trace.strip().splitlines()[0][:300] if trace.strip() else ""))
    return rows


def lag_rows(settings: Settings, cfg: PipelineConfig) -> list[StageRow]:
    rows = []
    cdc = group_lag(settings.kafka("admin"), cfg.pii_processor.consumer_group, cfg.cdc_topics)
    for topic, lag in cdc.items():
        rows.append(_lag_row("cdc -> _secure", topic, lag, cfg.pii_processor.consumer_group))
    for e in cfg.entities.values():
        group = f"{cfg.clickhouse.consumer_group}-{e.name}"
        lag = group_lag(settings.kafka("admin"), group, [e.secure_topic])[e.secure_topic]
        rows.append(_lag_row("_secure -> clickhouse", e.secure_topic, lag, group))
    return rows


def _lag_row(stage: str, topic: str, lag: int | None, group: str) -> StageRow:
    if lag is None:
        return StageRow(stage, topic, False, "no topic", f"group={group}", "topic missing: no data has flowed yet")
    healthy = lag <= MAX_LAG
    return StageRow(stage, topic, healthy, f"lag={lag}", f"group={group}",
                    "" if healthy else f"more than {MAX_LAG} records behind")


def dlq_count(kafka: KafkaConnection, topic: str, timeout_s: float = 10.0) -> int:
    """Committed records in the DLQ topic (from the low watermarks: transaction markers are not records)."""
    consumer = Consumer(kafka.config({"group.id": "freshctl-status", "log_level": 0}))
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if meta is None or meta.error is not None:
            return 0
        ranges = {(topic, p): consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
                  for p in meta.partitions}
    finally:
        consumer.close()
    return count_records(kafka, ranges, timeout_s)


def dlq_row(settings: Settings, cfg: PipelineConfig) -> StageRow:
    n = dlq_count(settings.kafka("admin"), cfg.kafka.dlq_topic)
    return StageRow("dlq", cfg.kafka.dlq_topic, n == 0, f"records={n}", "",
                    "" if n == 0 else "records failed processing; see docs/pii.md (DLQ)")


def freshness_rows(settings: Settings, cfg: PipelineConfig, stack: LocalStack) -> list[StageRow]:
    if settings.clickhouse_backend == "chdb" and read_owner(settings.chdb_path) is None:
        # Opening the engine here would make this status command its consumer; report instead.
        running = stack.pid_of("ingest") is not None
        return [StageRow("freshness", "clickhouse", False, "unknown", "",
                         "the ingest service is restarting: no process owns the engine" if running
                         else "the ingest service is not running; `freshctl up` starts it")]
    backend = open_backend(settings)
    try:
        rows = []
        for f in freshness(backend, cfg):
            errors = int(f["stream_errors"])
            rows.append(StageRow(
                "freshness", str(f["entity"]), errors == 0, f"newest={float(f['newest_age_s']):.1f}s ago",
                f"e2e_p50={float(f['e2e_p50_s']):.2f}s raw={f['raw_rows']} mart={f['mart_rows']}",
                "" if errors == 0 else f"{errors} unparsed message(s) in kafka_errors; latest: "
                                       f"{str(f['last_stream_error'])[:200]}"))
        return rows
    finally:
        backend.close()


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def pipeline_status(settings: Settings, cfg: PipelineConfig) -> list[StageRow]:
    """Every stage's row, unhealthy rows first (stable order otherwise)."""
    stack = LocalStack(settings)
    collectors: list[tuple[str, Callable[[], list[StageRow]]]] = [
        ("service", lambda: service_rows(stack)),
        ("connector", lambda: connector_rows(settings, cfg)),
        ("lag", lambda: lag_rows(settings, cfg)),
        ("dlq", lambda: [dlq_row(settings, cfg)]),
        ("freshness", lambda: freshness_rows(settings, cfg, stack)),
    ]
    rows: list[StageRow] = []
    host, _, port = settings.kafka_bootstrap.rpartition(":")
    if not _reachable(host or "127.0.0.1", int(port or 9092)):
        # Every Kafka call would wait for its timeout: say it once instead.
        rows.append(StageRow("kafka", settings.kafka_bootstrap, False, "unreachable", "",
                             "no broker answers; `freshctl up` starts the local stack"))
        collectors = [c for c in collectors if c[0] not in ("lag", "dlq")]
    for stage, collect in collectors:
        try:
            rows.extend(collect())
        except (FreshError, KafkaException) as exc:
            rows.append(StageRow(stage, "-", False, "unknown", "", str(exc).splitlines()[0][:300]))
    return sorted(rows, key=lambda r: r.healthy)
