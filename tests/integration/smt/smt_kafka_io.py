"""Kafka and pipeline-config helpers for the PII processor's integration tests (imported by the tests
and by conftest.py; a plain module, because `from conftest import ...` depends on which conftest
Python happens to have imported first)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, IsolationLevel, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from fresh.kafka_connection import KafkaConnection
from fresh.pipeline import PipelineConfig, load_pipeline_config
from fresh.settings import Settings
from fresh.wait import wait_until
from stack.kafka_security import grant_pipeline_acls
from tests.cdc_records import CdcRecord

PARTITIONS = 3


@dataclass(frozen=True)
class Out:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


class Kafka:
    def __init__(self, bootstrap: KafkaConnection):
        self.bootstrap = bootstrap
        self.admin = AdminClient(bootstrap.config())

    def fresh_admin(self) -> AdminClient:
        """A new admin client (keep it in a variable while its futures run): one made before a
        broker restart may keep stale metadata (FENCED_LEADER_EPOCH) or never answer again."""
        return AdminClient(self.bootstrap.config({"log_level": 0}))

    def create(self, topics: Iterable[str], partitions: int = PARTITIONS) -> None:
        new = [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics]
        futures = self.admin.create_topics(new)
        for fut in futures.values():
            fut.result(timeout=30)

    def produce(self, records: Iterable[CdcRecord],
                extra: Iterable[tuple[str, bytes | None, bytes | None]] = ()) -> int:
        producer = Producer(self.bootstrap.config({"partitioner": "murmur2_random", "log_level": 0,
                             "linger.ms": 5, "message.max.bytes": 1_000_000}))
        n = 0
        for r in records:
            producer.produce(r.topic, r.value, r.key)
            n += 1
            if n % 10_000 == 0:
                producer.flush(30)
        for topic, key, value in extra:
            producer.produce(topic, value, key)
            n += 1
        assert producer.flush(30) == 0
        return n

    def read_to_end(self, topics: Iterable[str], timeout_s: float = 60, committed: bool = True) -> list[Out]:
        """Every committed record of `topics`: reads until each partition's position reaches its end."""
        consumer = Consumer(self.bootstrap.config({"group.id": "unused", "enable.auto.commit": False,
                             "isolation.level": "read_committed" if committed else "read_uncommitted",
                             "fetch.max.bytes": 52_428_800}))
        meta = consumer.list_topics(timeout=30).topics
        tps = [TopicPartition(t, p, 0) for t in topics if t in meta for p in meta[t].partitions]
        consumer.assign(tps)
        admin = self.fresh_admin()
        latest = admin.list_offsets({TopicPartition(tp.topic, tp.partition): OffsetSpec.latest() for tp in tps})
        ends = {(tp.topic, tp.partition): fut.result(timeout=30).offset for tp, fut in latest.items()}
        out: list[Out] = []

        def at_end() -> bool:
            for msg in consumer.consume(10_000, 0.5):
                if msg.error() is None:
                    out.append(Out(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(),  # type: ignore[arg-type]
                                   dict((k, v or b"") for k, v in (msg.headers() or []))))
            positions = consumer.position([TopicPartition(t, p) for t, p in ends])
            return all(ends[(tp.topic, tp.partition)] <= max(tp.offset, 0) or ends[(tp.topic, tp.partition)] == 0
                       for tp in positions)

        try:
            wait_until(at_end, timeout_s=timeout_s, what=f"reading {sorted(ends)} to the end", interval_s=0.01)
        finally:
            consumer.close()
        return out

    def count(self, topics: Iterable[str]) -> int:
        return len(self.read_to_end(topics))

    def committed(self, group: str) -> int:
        """The sum of `group`'s committed offsets (= records it has consumed, on topics that start at 0).
        """
        admin = self.fresh_admin()
        fut = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
        return sum(tp.offset for tp in fut.result(timeout=30).topic_partitions if tp.offset > 0)

    def open_transactions(self, topics: Iterable[str], admin: AdminClient | None = None) -> int:
        """Partitions of `topics` whose last stable offset is below the high watermark: records of a
        transaction neither committed nor aborted yet are in the log. `admin`: a client to reuse
        (one per look made and dropped dozens of clients a second, and pytest sometimes crashed)."""
        admin = admin or self.fresh_admin()
        meta = admin.list_topics(timeout=30).topics
        tps = [TopicPartition(t, p) for t in topics if t in meta for p in meta[t].partitions]

        def ends(level: IsolationLevel) -> dict[tuple[str, int], int]:
            futs = admin.list_offsets({tp: OffsetSpec.latest() for tp in tps}, isolation_level=level)
            return {(tp.topic, tp.partition): f.result(timeout=30).offset for tp, f in futs.items()}

        stable, high = ends(IsolationLevel.READ_COMMITTED), ends(IsolationLevel.READ_UNCOMMITTED)
        return sum(stable[k] < high[k] for k in high)


def make_pipeline(settings: Settings, unique: str,
                  pii_overrides: dict[str, dict[str, Any]] | None = None) -> PipelineConfig:
    raw = load_pipeline_config(settings.pipeline_config).isolated(unique).model_dump(mode="json", exclude_none=True)
    for entity, fields in (pii_overrides or {}).items():
        raw["entities"][entity]["pii"].update(fields)
    cfg = PipelineConfig.model_validate(raw)
    grant_pipeline_acls(settings, cfg)  # `freshctl secure run` children run as the processor's own user
    return cfg


def write_pipeline(cfg: PipelineConfig, path: Path) -> Path:
    path.write_text(cfg.to_yaml(), encoding="utf-8")
    return path


class Feeder:
    """Produces records in chunks on a thread, as Debezium would: idempotent, and patient with a
    broker that is away (records wait in the client and go when it is back). Its errors are kept
    and re-raised by `join`, never swallowed."""

    def __init__(self, bootstrap: KafkaConnection, records: list[CdcRecord], chunk: int = 500, pause_s: float = 0.0):
        self.producer = Producer(bootstrap.config({"partitioner": "murmur2_random",
                                  "enable.idempotence": True, "linger.ms": 5, "message.timeout.ms": 300_000,
                                  "message.max.bytes": 1_000_000, "log_level": 0}))
        self.records, self.chunk, self.pause_s = records, chunk, pause_s
        self.error: BaseException | None = None
        self.failed: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failed.append(err.str())

    def _run(self) -> None:
        try:
            for i in range(0, len(self.records), self.chunk):
                for r in self.records[i:i + self.chunk]:
                    self.producer.produce(r.topic, r.value, r.key, on_delivery=self._delivered)
                self.producer.poll(0)
                if self.pause_s:
                    threading.Event().wait(self.pause_s)  # the pace of the stream, not a wait for a condition
            left = self.producer.flush(300)
            assert left == 0, f"{left} records not delivered"
            assert not self.failed, f"deliveries failed: {self.failed[:3]}"
        except BaseException as exc:  # re-raised by join()
            self.error = exc

    def join(self, timeout_s: float = 300) -> None:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "the feeder did not finish"
        if self.error is not None:
            raise self.error


def freeze_with_open_transaction(proc: subprocess.Popen[bytes], kafka: Kafka, cfg: PipelineConfig,
                                 attempts: int = 50) -> int:
    """Freeze `proc` (SIGSTOP) at a moment one of its transactions is open, and prove it: `_secure`
    partitions whose last stable offset is below the high watermark. If none, let it run a moment
    and look again. Returns the number of such partitions; `proc` is left stopped."""
    admin = kafka.fresh_admin()  # one client for every look (the broker stays up meanwhile)
    for _ in range(attempts):
        proc.send_signal(signal.SIGSTOP)
        found = kafka.open_transactions(cfg.secure_topics, admin)
        if found:
            return found
        proc.send_signal(signal.SIGCONT)
        threading.Event().wait(0.05)  # let it run into its next transaction
    raise AssertionError(f"no open transaction seen in {attempts} looks: the fault would prove nothing")


def kill_with_open_transaction(proc: subprocess.Popen[bytes], kafka: Kafka, cfg: PipelineConfig) -> int:
    """SIGKILL `proc` while one of its transactions is open (frozen first, so it cannot commit in
    between); the transaction is checked to be still open after the kill. Returns its partitions."""
    freeze_with_open_transaction(proc, kafka, cfg)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    still_open = kafka.open_transactions(cfg.secure_topics)
    assert still_open > 0, "the transaction open at the kill was resolved before it: no proof"
    return still_open


FRESHCTL = str(Path(sys.executable).parent / "freshctl")


def identities_in(records: list[CdcRecord], cfg: PipelineConfig) -> Counter:
    """Each CDC record as the `_secure` record it must become: (secure topic, key, source timestamp)."""
    return Counter((cfg.entity_for_topic(r.topic).secure_topic, r.key,
                    None if r.value is None else json.loads(r.value)["__source_ts_ms"]) for r in records)


def identities_out(outs: list[Out]) -> Counter:
    """The same identities of what was read from the `_secure` topics (a duplicate counts twice)."""
    return Counter((o.topic, o.key, None if o.value is None else json.loads(o.value)["__source_ts_ms"]) for o in outs)
