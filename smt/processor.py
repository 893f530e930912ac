"""The PII processor: a transactional consume-transform-produce loop (confluent-kafka).

Each batch is one Kafka transaction: the `_secure` records, the DLQ records and the consumer
offsets commit together or not at all, so a crash or a rebalance never loses or duplicates a
record for `read_committed` readers. The transactional id and the static group membership are
both the instance id, so a restarted instance fences its former self at once and aborts the
transaction it left open.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from fresh.clients import kafka_config
from fresh.errors import FreshError
from fresh.pipeline import PipelineConfig
from smt.keyring import Keyring, KeyringSource
from smt.transform import OVERSIZE, RecordError, Transformer

log = logging.getLogger(__name__)
MAX_OUTPUT_BYTES = 900_000  # below the producer's message.max.bytes (1 MB), with room for headers
DLQ_COLLECTION = "dlq"  # envelope AD of a DLQ payload: collection "dlq", field path = the source topic


class ProcessorError(FreshError):
    """The processor cannot go on (fenced by a newer instance, or Kafka refused the transaction)."""


@dataclass
class ProcessorOptions:
    bootstrap: str
    instance_id: str = field(default_factory=socket.gethostname)
    group_id: str = ""  # default: pipeline_config.pii_processor.consumer_group
    batch_size: int = 5000
    poll_timeout_s: float = 0.5
    transaction_timeout_ms: int = 10_000
    session_timeout_ms: int = 10_000
    counters_interval_s: float = 10.0
    keyring_check_s: float = 1.0
    kafka_timeout_s: float = 30.0
    native: bool = True  # the Rust fast path of the transform when built (smt/native); False: Python only
    transform_threads: int = field(default_factory=lambda: min(4, os.cpu_count() or 1))  # native path, per batch


@dataclass
class Counters:
    consumed: int = 0
    produced: int = 0
    dlq: int = 0
    tombstones: int = 0
    transactions: int = 0
    aborts: int = 0
    lag: int = -1
    bytes_in: int = 0
    bytes_out: int = 0
    first_record_at: float = 0.0  # time.monotonic() of the first record and of the last commit
    last_commit_at: float = 0.0

    def line(self) -> str:
        return (f"in={self.consumed} out={self.produced} dlq={self.dlq} tombstones={self.tombstones} "
                f"txns={self.transactions} aborts={self.aborts} lag={self.lag}")


def topic_mapping(pipeline: PipelineConfig) -> dict[str, str]:
    return {e.cdc_topic: e.secure_topic for e in pipeline.entities.values()}


def ensure_topics(pipeline: PipelineConfig, bootstrap: str, timeout_s: float = 30.0) -> list[str]:
    """Create each `_secure` topic (as many partitions as its CDC topic, so keys land alike) and the
    DLQ topic if missing. Returns the names created."""
    admin = AdminClient(kafka_config(bootstrap))
    existing = admin.list_topics(timeout=timeout_s).topics
    wanted: dict[str, int] = {}
    for cdc, secure in topic_mapping(pipeline).items():
        if secure not in existing:
            wanted[secure] = len(existing[cdc].partitions) if cdc in existing else 1
    if pipeline.kafka.dlq_topic not in existing:
        wanted[pipeline.kafka.dlq_topic] = 1
    if not wanted:
        return []
    futures = admin.create_topics([NewTopic(t, num_partitions=n, replication_factor=-1) for t, n in wanted.items()])
    for topic, fut in futures.items():
        try:
            fut.result(timeout=timeout_s)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise ProcessorError(f"cannot create topic {topic}: {exc.args[0].str()}") from None
    return sorted(wanted)


class Processor:
    def __init__(self, pipeline: PipelineConfig, keyring: KeyringSource, options: ProcessorOptions):
        self.pipeline = pipeline
        self.options = options
        self.keyring_source = keyring
        self.keyring: Keyring = keyring.current()  # fail at start, not at the first record
        cfg = pipeline.pii_processor
        # Refuses any entity without a policy (PolicyMissingError) before touching Kafka.
        self.transformers = {
            e.cdc_topic: Transformer(e, cfg.default_region, cfg.max_record_bytes, options.native)
            for e in pipeline.entities.values()
        }
        # "native" when every entity with rules runs the Rust fast path (smt/native), else "python"
        self.transform_kind = "native" if all(t.native or not t.rules for t in self.transformers.values()) else "python"
        self.outputs = topic_mapping(pipeline)
        self.dlq_topic = pipeline.kafka.dlq_topic
        self.group_id = options.group_id or cfg.consumer_group
        self.counters = Counters()
        self.assignment: set[tuple[str, int]] = set()
        self._lag_lock = threading.Lock()
        self._workers: ThreadPoolExecutor | None = None  # one thread per topic while running

    # ---- clients ---------------------------------------------------------------------------

    def _stats(self, raw: str) -> None:
        lag = 0
        for topic in json.loads(raw).get("topics", {}).values():
            for pid, part in topic.get("partitions", {}).items():
                if pid != "-1" and part.get("consumer_lag", -1) >= 0:
                    lag += part["consumer_lag"]
        with self._lag_lock:
            self.counters.lag = lag

    def _clients(self) -> tuple[Consumer, Producer]:
        o = self.options
        stats_ms = int(o.counters_interval_s * 1000) if o.counters_interval_s > 0 else 0
        consumer = Consumer(kafka_config(o.bootstrap, {  # librdkafka's own log lines go to our logger
            "group.id": self.group_id,
            "group.instance.id": o.instance_id,
            "client.id": f"pii-{o.instance_id}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "session.timeout.ms": o.session_timeout_ms,
            "statistics.interval.ms": stats_ms,
            "stats_cb": self._stats,
            "fetch.max.bytes": 52_428_800,
        }))
        producer = Producer(kafka_config(o.bootstrap, {
            "transactional.id": f"pii-{self.group_id}-{o.instance_id}",
            "transaction.timeout.ms": o.transaction_timeout_ms,
            "client.id": f"pii-{o.instance_id}",
            "partitioner": "murmur2_random",  # the Java default: the same key lands where Debezium put it
            "linger.ms": 5,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "message.max.bytes": 1_000_000,
        }))
        return consumer, producer

    # ---- the loop --------------------------------------------------------------------------

    def run(self, stop: threading.Event, idle_exit_s: float | None = None) -> Counters:
        """Process until `stop` is set (SIGTERM in the CLI) or, if given, no record arrived for
        `idle_exit_s` seconds. The open transaction is committed before returning."""
        o = self.options
        consumer, producer = self._clients()
        producer.init_transactions(o.kafka_timeout_s)  # fences a former self, aborts its open txn
        topics = sorted(self.transformers)
        consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke)
        log.info("processor started instance=%s group=%s transform=%s transform_threads=%d topics=%s", o.instance_id,
                 self.group_id, self.transform_kind, o.transform_threads, ",".join(topics))
        if self.transform_kind == "python" and o.native:
            log.warning("smt_native is not installed (scripts/setup builds it): the transform runs in pure Python, "
                        "about half as fast")
        last_record = last_counters = last_keyring = time.monotonic()
        self._workers = ThreadPoolExecutor(max_workers=len(self.transformers), thread_name_prefix="transform")
        try:
            while not stop.is_set():
                msgs = consumer.consume(o.batch_size, o.poll_timeout_s)
                now = time.monotonic()
                if now - last_counters >= o.counters_interval_s > 0:
                    log.info("counters instance=%s %s", o.instance_id, self.counters.line())
                    last_counters = now
                if not msgs:
                    if idle_exit_s is not None and now - last_record >= idle_exit_s:
                        break
                    continue
                last_record = now
                if now - last_keyring >= o.keyring_check_s:
                    self.keyring = self.keyring_source.current()  # picks up a rotation
                    last_keyring = now
                self._process_batch(msgs, consumer, producer)
        finally:
            log.info("processor stopping instance=%s %s", o.instance_id, self.counters.line())
            self._workers.shutdown()
            consumer.close()
            producer.flush(o.kafka_timeout_s)
        return self.counters

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assignment = {(tp.topic, tp.partition) for tp in partitions}
        log.info("assigned instance=%s partitions=%d", self.options.instance_id, len(partitions))

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # No transaction is open here: each batch commits before the next consume() call.
        self.assignment -= {(tp.topic, tp.partition) for tp in partitions}
        log.info("revoked instance=%s partitions=%d", self.options.instance_id, len(partitions))

    def _process_batch(self, msgs: list[Message], consumer: Consumer, producer: Producer) -> None:
        offsets: dict[tuple[str, int], int] = {}
        firsts: dict[tuple[str, int], int] = {}
        by_topic: dict[str, list[Message]] = {}
        producer.begin_transaction()
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error topic=%s partition=%s error=%s", msg.topic(), msg.partition(), err.str())
                continue
            topic, partition, offset = cast(str, msg.topic()), cast(int, msg.partition()), cast(int, msg.offset())
            firsts.setdefault((topic, partition), offset)
            offsets[(topic, partition)] = offset + 1
            by_topic.setdefault(topic, []).append(msg)
        if not offsets:
            producer.abort_transaction(self.options.kafka_timeout_s)
            return
        # Each topic's records are transformed on a worker thread (one policy each; the native
        # transform runs without the GIL), and each topic is produced, in order, as soon as its
        # transform is done: this thread produces one topic while the next is still transformed.
        # A partition's records keep their order; nothing else needs one.
        assert self._workers is not None  # run() made it
        jobs = {self._workers.submit(self.transform_batch, topic, [m.value() for m in topic_msgs]): topic
                for topic, topic_msgs in by_topic.items()}
        for job in as_completed(jobs):
            topic = jobs[job]
            for msg, out in zip(by_topic[topic], job.result(), strict=True):
                self._handle(msg, topic, out, producer)
        if self._commit(offsets, firsts, consumer, producer):
            self.counters.transactions += 1
            self.counters.last_commit_at = time.monotonic()

    def transform_batch(self, topic: str, values: list[bytes | None]) -> list[bytes | RecordError | None]:
        """The work on one topic's records of a batch, in order; benchmarks override it (passthrough)."""
        outs = self.transformers[topic].transform_many(values, self.keyring, self.options.transform_threads)
        for i, out in enumerate(outs):
            if isinstance(out, bytes) and len(out) > MAX_OUTPUT_BYTES:
                outs[i] = RecordError(OVERSIZE, f"encrypted record is {len(out)} bytes, limit {MAX_OUTPUT_BYTES}")
        return outs

    def _handle(self, msg: Message, topic: str, out: bytes | RecordError | None, producer: Producer) -> None:
        c = self.counters
        if not c.consumed:
            c.first_record_at = time.monotonic()
        c.consumed += 1
        value = msg.value()
        c.bytes_in += len(value) if value else 0
        if isinstance(out, RecordError):
            self._dead_letter(msg, topic, out.reason, out.detail, producer)
            return
        try:
            self._produce(producer, self.outputs[topic], out, msg.key(), msg.headers(), msg.timestamp()[1])
        except KafkaException as exc:  # refused locally (size, headers): the record is not lost, it goes to the DLQ
            self._dead_letter(msg, topic, "produce_failed", exc.args[0].str(), producer)
            return
        c.produced += 1
        if out is None:
            c.tombstones += 1
        else:
            c.bytes_out += len(out)

    def _dead_letter(self, msg: Message, topic: str, reason: str, detail: str, producer: Producer) -> None:
        partition, offset = msg.partition(), msg.offset()
        log.warning("dlq topic=%s partition=%s offset=%s reason=%s detail=%s", topic, partition, offset, reason, detail)
        payload = self.keyring.active.encrypt(msg.value() or b"", DLQ_COLLECTION, topic)
        headers = [
            ("dlq.reason", reason.encode()),
            ("dlq.detail", detail.encode()),
            ("dlq.source.topic", topic.encode()),
            ("dlq.source.partition", str(partition).encode()),
            ("dlq.source.offset", str(offset).encode()),
            ("dlq.source.timestamp", str(msg.timestamp()[1]).encode()),
            ("dlq.instance", self.options.instance_id.encode()),
        ]
        self._produce(producer, self.dlq_topic, payload.encode(), msg.key(), headers, None)
        self.counters.dlq += 1

    @staticmethod
    def _produce(producer: Producer, topic: str, value: bytes | None, key: bytes | None, headers: Any,
                 timestamp: int | None) -> None:
        kwargs: dict[str, Any] = {"headers": headers} if headers else {}
        if timestamp and timestamp > 0:
            kwargs["timestamp"] = timestamp
        while True:
            try:
                producer.produce(topic, value, key, **kwargs)
                return
            except BufferError:
                producer.poll(0.05)  # local queue full: let deliveries drain

    def _commit(self, offsets: dict[tuple[str, int], int], firsts: dict[tuple[str, int], int],
                consumer: Consumer, producer: Producer) -> bool:
        timeout = self.options.kafka_timeout_s
        tps = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        try:
            self._retry(lambda: producer.send_offsets_to_transaction(tps, consumer.consumer_group_metadata(), timeout))
            self._retry(lambda: producer.commit_transaction(timeout))
            return True
        except KafkaException as exc:
            err = exc.args[0]
            if not err.txn_requires_abort():
                raise ProcessorError(
                    f"transaction failed and cannot be aborted ({err.str()}); another instance with id "
                    f"{self.options.instance_id!r} may have fenced this one"
                ) from None
            log.warning("transaction aborted instance=%s error=%s; rewinding", self.options.instance_id, err.str())
            producer.abort_transaction(timeout)
            self.counters.aborts += 1
            for (t, p), first in firsts.items():
                consumer.seek(TopicPartition(t, p, first))
            return False

    @staticmethod
    def _retry(call: Any, attempts: int = 5) -> None:
        for attempt in range(attempts):
            try:
                call()
                return
            except KafkaException as exc:
                if not exc.args[0].retriable() or attempt == attempts - 1:
                    raise
