"""The whole local pipeline as library calls: `up` composes the stages, `down` stops them.

`up`: the stack (Kafka, Connect + Debezium, MongoDB) -> a keyring if there is none -> the
ClickHouse ingest service (it owns the embedded engine and answers everyone's queries) ->
migrations -> connectors (render, lint, validate, apply) -> the PII processor service -> the
default seed (only into an empty database) -> MART equal to MongoDB, with a deadline -> change
mode if asked -> a summary. Each step reuses what already runs, so a second `up` takes seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import NewTopic

from clickhouse.audit import audit
from clickhouse.backend import Backend, open_backend
from clickhouse.migrate import migrate_settings
from clickhouse.quality import freshness, mart_keys
from connectors.apply import ApplyResult
from connectors.connect_api import ConnectApi
from connectors.register import register
from connectors.render import render
from fresh.clients import kafka_admin, mongo_client
from fresh.errors import FreshError, StackError
from fresh.pipeline import PipelineConfig, load_pipeline_config
from fresh.settings import Settings
from fresh.wait import wait_until
from generator.domain import Plan
from generator.seed import ENTITIES, seed_database
from grafana.snapshot_files import SnapshotFiles, existing_snapshots, snapshot_dir
from smt.keyring import KeyringSource, new_keyring
from smt.processor import ensure_topics
from stack import processor_services
from stack.health import dlq_count
from stack.services import LocalStack

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


@dataclass
class UpOptions:
    seed: bool = True
    seed_value: int = 42
    changes: int = 0
    rate: float = 10.0
    timeout_s: float = 300.0
    environment: str = "local"
    wait: bool = True  # wait until MART holds what MongoDB holds


# Rows per table the summary's plaintext audit reads (a random sample beyond that): a second `up`
# stays quick on a large warehouse; `freshctl clickhouse audit` reads every row.
SUMMARY_AUDIT_ROWS = 5_000


@dataclass
class Summary:
    layers: list[dict[str, Any]]  # per entity: mongodb, raw, mart rows; freshness
    dlq_records: int
    audit_findings: list[str]
    snapshots: list[SnapshotFiles] = field(default_factory=list)  # written by `freshctl grafana snapshot`
    snapshot_dir: Path | None = None
    audit_sampled: bool = False  # the plaintext audit read a random sample of a table (SUMMARY_AUDIT_ROWS)

    def rows(self) -> list[dict[str, Any]]:
        return self.layers

    def snapshot_note(self, now: float) -> str:
        """The summary's line on the dashboard snapshots: where they are and how old, or how to draw them."""
        if not self.snapshots:
            return f"snapshots: none in {self.snapshot_dir}; draw the dashboards with `freshctl grafana snapshot`"
        age_s = now - min(s.written_at for s in self.snapshots)
        age = f"{age_s / 3600:.1f} h" if age_s >= 3600 else f"{age_s / 60:.0f} min"
        names = ", ".join(s.html.name for s in self.snapshots)
        return (f"snapshots: {names} in {self.snapshot_dir} (oldest {age} old; "
                "`freshctl grafana snapshot` draws them again)")


@dataclass
class UpResult:
    seconds: float
    started: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    keyring: str = ""
    keyring_created: bool = False
    migrations_applied: int = 0
    connectors: list[ApplyResult] = field(default_factory=list)
    seeded: int = 0
    summary: Summary | None = None


class MartMismatchError(FreshError):
    """MART does not hold what MongoDB holds (yet)."""


def ensure_keyring(settings: Settings) -> tuple[str, bool]:
    """Where the keyring is, and whether it was created just now (only a missing file is created)."""
    source = KeyringSource.from_settings(settings)
    if not source.writable:
        source.current()
        return "FRESH_KEYRING_JSON", False
    path = settings.keyring_path
    if path.exists():
        source.current()  # a broken keyring fails here, not in the processor's log
        return str(path), False
    source, _infos, _kek_file = new_keyring(settings)
    return f"{path} (wrapped by {source.kek.description if source.kek else 'nothing: unwrapped'})", True


def mongo_counts(settings: Settings, cfg: PipelineConfig) -> dict[str, int]:
    client = mongo_client(settings)
    try:
        db = client[cfg.mongodb.database]
        return {e.name: db[e.collection].count_documents({}) for e in cfg.entities.values()}
    finally:
        client.close()


def mart_mismatch(settings: Settings, cfg: PipelineConfig, backend: Backend) -> str:
    """'' when MART holds exactly MongoDB's business keys per entity, else what differs."""
    client = mongo_client(settings)
    try:
        db = client[cfg.mongodb.database]
        for e in cfg.entities.values():
            ids = sorted(str(d["_id"]) for d in db[e.collection].find({}, {"_id": 1}))
            got = mart_keys(backend, cfg, e.name)
            if got != ids:
                missing, extra = sorted(set(ids) - set(got)), sorted(set(got) - set(ids))
                return (f"{e.name}: MongoDB {len(ids)}, MART {len(got)} (missing {len(missing)} e.g. {missing[:3]}, "
                        f"extra {len(extra)} e.g. {extra[:3]})")
        return ""
    finally:
        client.close()


def wait_mart_equals_mongo(settings: Settings, cfg: PipelineConfig, backend: Backend, timeout_s: float) -> None:
    def equal() -> bool:
        diff = mart_mismatch(settings, cfg, backend)
        if diff:
            raise MartMismatchError(diff)  # named in the timeout message
        return True

    wait_until(equal, timeout_s=timeout_s, what="MART to hold what MongoDB holds", interval_s=0.5)


def summary(settings: Settings, cfg: PipelineConfig, backend: Backend) -> Summary:
    mongo = mongo_counts(settings, cfg)
    layers = []
    for f in freshness(backend, cfg):
        layers.append({"entity": f["entity"], "mongodb": mongo.get(str(f["entity"]), 0), "raw": f["raw_rows"],
                       "mart": f["mart_rows"], "e2e_p50_s": f["e2e_p50_s"], "newest_age_s": f["newest_age_s"],
                       "stream_errors": f["stream_errors"]})
    _tables, findings = audit(backend, cfg, sample_rows=SUMMARY_AUDIT_ROWS)
    sampled = any(max(int(layer["raw"]), int(layer["mart"])) > SUMMARY_AUDIT_ROWS for layer in layers)
    folder = snapshot_dir(settings)
    return Summary(layers, dlq_count(settings.kafka("admin"), cfg.kafka.dlq_topic),
                   [f"{f.as_row()}" for f in findings], existing_snapshots(folder), folder, sampled)


def plan_up(settings: Settings, options: UpOptions) -> list[dict[str, str]]:
    """What `up` would do, step by step, changing nothing (`freshctl up --dry-run`)."""
    cfg = load_pipeline_config(settings.pipeline_config)
    stack = LocalStack(settings)

    def svc(name: str) -> str:
        return "running: reuse" if stack.pid_of(name) else "would start"

    rows = [{"step": f"stack {name}", "action": svc(name)} for name in stack.services]
    source = KeyringSource.from_settings(settings)
    keyring = "FRESH_KEYRING_JSON: use" if not source.writable else \
        (f"{settings.keyring_path}: use" if settings.keyring_path.exists() else f"would create {settings.keyring_path}")
    rows.append({"step": "keyring", "action": keyring})
    rows.append({"step": "kafka topics", "action": "would create the missing _secure topics and the DLQ"})
    rows.append({"step": "ingest service", "action": svc("ingest")})
    rows.append({"step": "clickhouse migrations", "action": "would apply the pending ones"})
    rows.append({"step": f"connector {cfg.kafka.connector_name}",
                 "action": f"would render, lint, validate and apply ({options.environment})"})
    rows.append({"step": "processor service", "action": svc("processor")})
    rows.append({"step": "seed", "action": f"would seed {options.seed_value} into {cfg.mongodb.database} if empty"
                 if options.seed else "skipped (--no-seed)"})
    rows.append({"step": "check", "action": f"would wait up to {options.timeout_s:.0f}s for MART = MongoDB"})
    if options.changes:
        rows.append({"step": "changes service", "action": f"{svc('changes')}: {options.changes} changes at "
                                                          f"{options.rate:g}/s"})
    return rows


def up(settings: Settings, options: UpOptions, progress: Progress = lambda _line: None) -> UpResult:
    t0 = time.monotonic()
    cfg = load_pipeline_config(settings.pipeline_config)
    stack = LocalStack(settings)
    result = UpResult(seconds=0.0)

    progress("stack: Kafka, Kafka Connect + Debezium, MongoDB (jars fetched on first use)")
    report = stack.up()
    result.started, result.reused = list(report.started), list(report.reused)
    progress(f"stack: ready in {report.seconds:.1f}s (started: {', '.join(report.started) or '-'}; "
             f"reused: {', '.join(report.reused) or '-'})")

    result.keyring, result.keyring_created = ensure_keyring(settings)
    progress(f"keyring: {'created' if result.keyring_created else 'using'} {result.keyring}"
             + (" (keep it: what it encrypted is unreadable without it)" if result.keyring_created else ""))

    # The `_secure` topics and the DLQ before ClickHouse's Kafka tables subscribe to them: a consumer
    # may notice a topic created later only at its next metadata refresh (clickhouse/kafka_engine.xml).
    created_secure = ensure_topics(cfg, settings.kafka("admin"))
    if created_secure:
        progress(f"kafka: created {', '.join(created_secure)}")
    _service(stack, "ingest", None, result, progress)
    backend = open_backend(settings)
    try:
        applied = migrate_settings(settings, cfg, backend, progress=lambda m: progress(f"clickhouse: {m}"))
        result.migrations_applied = len(applied)
        progress(f"clickhouse: {len(applied)} migration(s) applied" if applied else "clickhouse: schema up to date")

        rendered = render(cfg, settings, options.environment)
        # Debezium's validation connects to MongoDB: on a loaded machine it outlasts the 10 s default.
        slow = settings.model_copy(update={"connect_timeout_s": max(settings.connect_timeout_s, 60.0)})
        result.connectors = register(ConnectApi.from_settings(slow), rendered, settings, timeout_s=120,
                                     skip_unchanged=True,
                                     progress=lambda m: progress(f"connectors: {m}"))
        progress("connectors: " + ", ".join(f"{r.connector} {r.action} {r.state}" for r in result.connectors))

        created = create_cdc_topics(settings, cfg, rendered.connectors[0].config if rendered.connectors else {})
        if created:
            progress(f"kafka: created CDC topics {', '.join(created)}")
        for name in processor_services(cfg.scale.processor_instances):
            _service(stack, name, None, result, progress)

        changes_running = stack.pid_of("changes") is not None
        if options.seed:
            result.seeded = seed_if_empty(settings, cfg, options.seed_value, progress)
        if changes_running:
            progress("check: change mode runs, so MART follows a moving target; `freshctl status` shows the lag")
        elif not options.wait:
            progress("check: skipped (--no-wait); `freshctl status` shows when MART catches up")
        else:
            progress(f"check: waiting up to {options.timeout_s:.0f}s for MART to hold what MongoDB holds")
            wait_mart_equals_mongo(settings, cfg, backend, options.timeout_s)
            progress("check: MART equals MongoDB")
        if options.changes:
            _service(stack, "changes", [str(options.changes), str(options.rate), str(options.seed_value)],
                     result, progress)
        result.summary = summary(settings, cfg, backend)
    finally:
        backend.close()
    result.seconds = time.monotonic() - t0
    return result


def create_cdc_topics(settings: Settings, cfg: PipelineConfig, connector_config: dict[str, str]) -> list[str]:
    """Create the CDC topics Debezium would create, with the settings of the connector's
    `topic.creation.cdc.*` group, before the processor subscribes: a consumer only notices a topic
    created after it subscribed at its next metadata refresh (librdkafka: every 5 minutes)."""
    admin = kafka_admin(settings.kafka("admin"))
    existing = admin.list_topics(timeout=30).topics
    missing = [t for t in cfg.cdc_topics if t not in existing]
    if not missing:
        return []
    prefix = "topic.creation.cdc."
    partitions = int(connector_config.get(prefix + "partitions", cfg.scale.partitions))
    replication = int(connector_config.get(prefix + "replication.factor", "-1"))
    configs = {k[len(prefix):]: v for k, v in connector_config.items()
               if k.startswith(prefix) and k[len(prefix):] in ("retention.ms", "cleanup.policy")}
    futures = admin.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=replication,
                                            config=configs) for t in missing])
    for topic, future in futures.items():
        try:
            future.result(timeout=30)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # Debezium was quicker: fine
                raise StackError(f"cannot create CDC topic {topic}: {exc.args[0].str()}") from None
    return missing


def _service(stack: LocalStack, name: str, args: list[str] | None, result: UpResult, progress: Progress) -> None:
    started = stack.start_supervised(name, args)
    (result.started if started else result.reused).append(name)
    pid = stack.pid_of(name)
    progress(f"{name}: {'started' if started else 'running'} (supervisor pid {pid}; "
             f"log: {stack.log_file(name)})")


def seed_if_empty(settings: Settings, cfg: PipelineConfig, seed_value: int, progress: Progress) -> int:
    """Seed the default plan when the pipeline's database holds no document; keep existing data
    otherwise (re-seeding would undo what change mode did)."""
    existing = sum(mongo_counts(settings, cfg).values())
    if existing:
        progress(f"seed: kept the {existing} documents already in {cfg.mongodb.database}")
        return 0
    report = seed_database(settings, cfg, Plan(seed=seed_value))
    total = sum(report.counts[e] for e in ENTITIES)
    progress(f"seed: {total} documents (seed {seed_value}) in {report.seconds:.1f}s")
    return total


def down(settings: Settings, *, wipe: bool = False) -> list[str]:
    """Stop everything `up` started (by PID), check no process of this stack is left, and with
    `wipe` delete the pipeline's local state together: Kafka data, configs and the chdb folder."""
    stack = LocalStack(settings)
    stopped = stack.down(wipe=wipe)
    try:
        wait_until(lambda: not stack.our_processes(), timeout_s=10, what="every process of this stack to exit")
    except FreshError:
        raise StackError(f"processes of this stack still run after down: {stack.our_processes()}; "
                         "stop them with `kill <pid>`") from None
    return stopped

