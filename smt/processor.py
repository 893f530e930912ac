"""The PII processor: a transactional consume-transform-produce loop (confluent-kafka).

Each batch is one Kafka transaction: the `_secure` records, the DLQ records and the consumer
offsets commit together or not at all, so a crash or a rebalance never loses or duplicates a
record for `read_committed` readers. The transactional id and the static group membership are
both the instance id, so a restarted instance fences its former self at once and aborts the
transaction it left open.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from fresh.clients import group_lag
from fresh.errors import FreshError
from fresh.kafka_connection import KafkaConnection, KafkaUnreachableError
from fresh.pipeline import PipelineConfig
from smt.dlq import DLQ_COLLECTION, Source, dlq_entry
from smt.keyring import Keyring, KeyringSource
from smt.transform import OVERSIZE, RecordError, Transformer

__all__ = ["DLQ_COLLECTION", "Processor", "ProcessorError", "ProcessorOptions", "ensure_topics", "preflight", "serve"]

log = logging.getLogger(__name__)
kafka_log = logging.getLogger("smt.kafka")  # librdkafka's own log lines (confluent `logger`)
MAX_OUTPUT_BYTES = 900_000  # below the producer's message.max.bytes (1 MB), with room for headers
PRODUCER_MAX_BYTES = 1_000_000  # the producer's message.max.bytes
KAFKA_DEFAULT_MAX_BYTES = 1_048_588  # a topic's max.message.bytes when the broker default is not changed
CALL_SLICE_S = 2.0  # one attempt of a transactional call; retried (resumed) until its bound
STOP_MARGIN_S = 2.0  # serve(): past stop_timeout_s, how long to wait for the loop to end
WATCHDOG_MARGIN_S = 15.0  # serve(): past kafka_timeout_s, how long one step may block
PRODUCE_FAILED = "produce_failed"
# Delivery errors that condemn the record itself; any other (purged when the transaction failed,
# timed out) only fails the transaction, and the record is simply produced again after the re-read.
RECORD_REFUSALS = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_RECORD, KafkaError.INVALID_MSG,
                             KafkaError.INVALID_MSG_SIZE})
BATCH_FRAMING_BYTES = 1024
MAX_COLLATERAL_ABORTS = 3
STARTS_META = "pf.starts="  # offset-commit metadata: starts at this committed offset without a commit since


class ProcessorError(FreshError):
    """The processor cannot go on (fenced by a newer instance, or Kafka refused the transaction)."""


class ProcessorStuckError(ProcessorError):
    """The processor stopped making progress (a Kafka call blocked past its bound, no commit for
    too long, or SIGTERM not honoured in time): it says so and exits for its supervisor."""


class CrashLoopError(ProcessorError):
    """The processor was started again and again at the same committed offset without committing."""

    exit_code = 4


@dataclass
class ProcessorOptions:
    kafka: KafkaConnection  # settings.kafka("processor"): the processor's own user
    instance_id: str = field(default_factory=socket.gethostname)
    group_id: str = ""  # default: pipeline_config.pii_processor.consumer_group
    batch_size: int = 5000
    poll_timeout_s: float = 0.5
    transaction_timeout_ms: int = 10_000
    session_timeout_ms: int = 10_000
    counters_interval_s: float = 10.0
    keyring_check_s: float = 1.0
    kafka_timeout_s: float = 30.0  # the bound of each commit / abort / flush / metadata call, all retries included
    stop_timeout_s: float = 5.0  # after stop (SIGTERM): the bound for committing or aborting the open transaction
    stall_timeout_s: float = 120.0  # records waiting and no commit for this long: exit (ProcessorStuckError)
    max_starts: int = 5  # starts at the same committed offset without a commit before CrashLoopError
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
    lag: int = -1  # the group's committed lag on the CDC topics (fresh.clients.group_lag); -1 until measured
    bytes_in: int = 0
    bytes_out: int = 0
    first_record_at: float = 0.0  # time.monotonic() of the first record and of the last commit
    last_commit_at: float = 0.0

    def line(self) -> str:
        return (f"in={self.consumed} out={self.produced} dlq={self.dlq} tombstones={self.tombstones} "
                f"txns={self.transactions} aborts={self.aborts} lag={self.lag}")


def topic_mapping(pipeline: PipelineConfig) -> dict[str, str]:
    return {e.cdc_topic: e.secure_topic for e in pipeline.entities.values()}


def _admin(kafka: KafkaConnection, quiet: bool = False) -> AdminClient:
    # librdkafka's lines go to the project's logger; the caller reports what failed in one line.
    return AdminClient(kafka.config({"logger": kafka_log, "log_level": 0 if quiet else 6,
                                     "socket.connection.setup.timeout.ms": 5000}))


def _list_topics(admin: AdminClient, kafka: KafkaConnection, timeout_s: float) -> dict[str, Any]:
    try:
        return cast(dict[str, Any], admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise kafka.failure_of(admin, timeout_s, exc) from None


def topic_limits(admin: AdminClient, topics: list[str], timeout_s: float) -> dict[str, int]:
    """max.message.bytes of each of `topics` that exists and can be described."""
    found: dict[str, int] = {}
    if not topics:
        return found
    futures = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, t) for t in topics])
    for resource, fut in futures.items():
        try:
            entry = fut.result(timeout=timeout_s).get("max.message.bytes")
        except KafkaException:
            continue
        if entry is not None and entry.value:
            found[resource.name] = int(entry.value)
    return found


def topic_max_bytes(admin: AdminClient, topics: list[str], timeout_s: float) -> int:
    """The smallest max.message.bytes of `topics` (the broker default when none can be read)."""
    return min(topic_limits(admin, topics, timeout_s).values(), default=KAFKA_DEFAULT_MAX_BYTES)


@dataclass
class Preflight:
    """What would stop `secure run`, one line each."""

    broker: str = ""  # the broker did not answer in time
    topics: list[str] = field(default_factory=list)  # a CDC topic is missing

    @property
    def problems(self) -> list[str]:
        return ([self.broker] if self.broker else []) + self.topics


def preflight(pipeline: PipelineConfig, kafka: KafkaConnection, timeout_s: float = 5.0) -> Preflight:
    """Check that the broker answers within `timeout_s` and every CDC topic exists. Never raises
    for Kafka being down: the answer says what is wrong, one line per problem."""
    try:
        existing = _list_topics(_admin(kafka, quiet=True), kafka, timeout_s)
    except FreshError as exc:  # unreachable, refused credentials, untrusted certificate: one line each
        return Preflight(broker=str(exc))
    return Preflight(topics=[f"CDC topic {cdc} does not exist on {kafka.bootstrap_servers} (register the connectors: "
                             "scripts/register_connectors)" for cdc in sorted(topic_mapping(pipeline))
                             if cdc not in existing])


def ensure_topics(pipeline: PipelineConfig, kafka: KafkaConnection, timeout_s: float = 30.0) -> list[str]:
    """Create each `_secure` topic (as many partitions as its CDC topic, so keys land alike; the
    config's scale.partitions when the CDC topic does not exist yet) and the DLQ topic if missing,
    with the CDC topics' record size limit (max.message.bytes). Returns the names created."""
    admin = _admin(kafka)
    existing = _list_topics(admin, kafka, timeout_s)
    wanted: dict[str, int] = {}
    for cdc, secure in topic_mapping(pipeline).items():
        if secure not in existing:
            wanted[secure] = len(existing[cdc].partitions) if cdc in existing else pipeline.scale.partitions
    if pipeline.kafka.dlq_topic not in existing:
        wanted[pipeline.kafka.dlq_topic] = pipeline.scale.dlq_partitions
    if not wanted:
        return []
    limit = topic_max_bytes(admin, [c for c in topic_mapping(pipeline) if c in existing], timeout_s)
    config = {"max.message.bytes": str(limit)}
    futures = admin.create_topics([NewTopic(t, num_partitions=n, replication_factor=-1, config=config)
                                   for t, n in wanted.items()], request_timeout=timeout_s)
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
        # Liveness, watched by serve(): the loop's current step and when it began.
        self.phase = "starting"
        self.heartbeat = time.monotonic()
        self.last_error = ""  # the last error librdkafka reported (error_cb or a retried call), for log lines
        self.dlq_max_bytes = PRODUCER_MAX_BYTES  # run(): also at most the DLQ topic's max.message.bytes
        self.out_max_bytes = PRODUCER_MAX_BYTES  # run(): the smallest max.message.bytes of the output topics
        self.limits: dict[str, int] = {}  # run(): max.message.bytes of each output topic (at most the producer's)
        self._collateral_aborts = 0  # aborts in a row for refused batches of records that each fit
        self._stop = threading.Event()
        self._stop_deadline: float | None = None
        self._in_txn = False
        self._last_progress = time.monotonic()  # last commit, or last poll with nothing waiting
        # Records the broker refused asynchronously (delivery reports), by source coordinates:
        # (topic, partition, offset) -> (was a DLQ record, error, bytes). The transaction is aborted and
        # the batch re-read; then `_escalate` sends such a record to the DLQ, and `_dlq_refused`
        # sends a refused DLQ record again without its payload.
        self._failed: dict[tuple[str, int, int], tuple[bool, KafkaError, int]] = {}
        self._escalate: dict[tuple[str, int, int], tuple[str, str]] = {}
        self._dlq_refused: set[tuple[str, int, int]] = set()
        # Start counting (crash-loop detection): partitions assigned and not yet counted, and the
        # partitions whose committed offset carries this run's start count (cleared by a commit).
        self._new_partitions: list[tuple[str, int]] = []
        self._counted: set[tuple[str, int]] = set()
        self._marked: dict[tuple[str, int], int] = {}


    # ---- clients ---------------------------------------------------------------------------

    def probe_lag(self) -> int:
        """Measure the counters line's `lag=`: the group's committed offsets against the high
        watermarks of the CDC topics (fresh.clients.group_lag), the number `freshctl status` and
        `secure health` show. Not librdkafka's consumer_lag, which is this instance's own fetch
        position and stayed stale after a restart (lag=451 for minutes at a committed lag of 0)."""
        topics = sorted(self.transformers)
        lags = group_lag(self.options.kafka, self.group_id, topics, min(self.options.kafka_timeout_s, 10.0))
        with self._lag_lock:
            self.counters.lag = sum(lag or 0 for lag in lags.values())
            return self.counters.lag

    def _watch_lag(self, done: threading.Event) -> None:
        """`probe_lag` every `counters_interval_s`, on its own thread (a few broker round trips)."""
        while not done.is_set():
            try:
                self.probe_lag()
            except FreshError as exc:  # the broker is away: the loop reports that; keep the last value
                log.debug("lag probe failed: %s", exc)
            done.wait(self.options.counters_interval_s)

    def _refresh_limits(self) -> None:
        self._beat("describe output topics")
        topics = [self.dlq_topic, *sorted(self.outputs.values())]
        found = topic_limits(_admin(self.options.kafka), topics, self.options.kafka_timeout_s)
        self.limits = {t: min(PRODUCER_MAX_BYTES, found.get(t, KAFKA_DEFAULT_MAX_BYTES)) for t in topics}
        self.dlq_max_bytes = self.limits[self.dlq_topic]
        self.out_max_bytes = min(self.limits.values())

    def _kafka_error(self, err: KafkaError) -> None:
        self.options.kafka.note(err)
        self.last_error = err.str()  # librdkafka also logs it (logger); kept for the stuck/abort lines

    def _clients(self) -> tuple[Consumer, Producer]:
        o = self.options
        consumer = Consumer(o.kafka.config({  # librdkafka's own log lines go to our logger
            "group.id": self.group_id,
            "group.instance.id": o.instance_id,
            "client.id": f"pii-{o.instance_id}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "session.timeout.ms": o.session_timeout_ms,
            "fetch.max.bytes": 52_428_800,
            "logger": kafka_log,
            "error_cb": self._kafka_error,
        }))
        producer = Producer(o.kafka.config({
            "transactional.id": f"pii-{self.group_id}-{o.instance_id}",
            "transaction.timeout.ms": o.transaction_timeout_ms,
            "client.id": f"pii-{o.instance_id}",
            "partitioner": "murmur2_random",  # the Java default: the same key lands where Debezium put it
            "linger.ms": 5,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "message.max.bytes": PRODUCER_MAX_BYTES,
            "batch.size": max(10_000, self.out_max_bytes - BATCH_FRAMING_BYTES),
            "delivery.report.only.error": True,  # per-record on_delivery fires only for refused records
            "logger": kafka_log,
            "error_cb": self._kafka_error,
        }))
        return consumer, producer

    # ---- bounds ----------------------------------------------------------------------------

    def _beat(self, phase: str) -> None:
        self.phase = phase
        self.heartbeat = time.monotonic()

    def _deadline(self) -> float:
        """The end of the bound for the next transactional step: kafka_timeout_s, or
        stop_timeout_s from the moment a stop was asked."""
        now = time.monotonic()
        deadline = now + self.options.kafka_timeout_s
        if self._stop.is_set():
            if self._stop_deadline is None:
                self._stop_deadline = now + self.options.stop_timeout_s
            deadline = min(deadline, self._stop_deadline)
        return deadline

    def _left(self, deadline: float) -> float:
        return min(deadline, self._deadline()) - time.monotonic()

    def _retry(self, call: Any, deadline: float) -> None:
        """`call(timeout)` until it succeeds, a non-retriable error, or `deadline`. Each attempt is
        at most CALL_SLICE_S long (librdkafka resumes a timed-out transactional call), so a stop
        asked meanwhile shortens the bound within a slice."""
        while True:
            left = self._left(deadline)
            if left <= 0:
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, f"{self.phase} did not finish within its "
                                                f"bound (last error: {self.last_error or 'none'})", retriable=True))
            try:
                call(min(left, CALL_SLICE_S))
                return
            except KafkaException as exc:
                if not exc.args[0].retriable():
                    raise
                if exc.args[0].code() != KafkaError._TIMED_OUT:
                    self.last_error = exc.args[0].str()
                self._beat(self.phase)
                self._stop.wait(min(0.2, max(left, 0)))  # a retriable refusal answers at once: do not spin

    def _flush(self, producer: Producer, deadline: float) -> None:
        self._beat("flush")
        while True:
            left = self._left(deadline)
            remaining = producer.flush(max(0.0, min(left, CALL_SLICE_S)))  # serves the delivery reports
            if remaining == 0:
                return
            if self._failed or left <= CALL_SLICE_S:
                raise _TxnAbortError(f"{remaining} records not delivered within the bound "
                                     f"(last error: {self.last_error or 'none'})")
            self._beat("flush")

    # ---- the loop --------------------------------------------------------------------------

    def run(self, stop: threading.Event, idle_exit_s: float | None = None) -> Counters:
        """Process until `stop` is set (SIGTERM in the CLI) or, if given, no record arrived for
        `idle_exit_s` seconds. The open transaction is committed (or aborted) within
        `stop_timeout_s` before returning. Every Kafka call is bounded; `serve()` also watches
        from another thread for a call that blocks past its bound."""
        o = self.options
        self._stop = stop
        # Record size limits of the output topics: the DLQ entries are cut to the DLQ topic's, and
        # no producer batch is larger than the smallest (or one big record would fail its whole batch).
        self._refresh_limits()
        self._beat("connect")
        consumer, producer = self._clients()
        lag_done = threading.Event()
        if o.counters_interval_s > 0:
            threading.Thread(target=self._watch_lag, args=(lag_done,), name="lag", daemon=True).start()
        try:
            self._beat("init_transactions")
            try:
                self._retry(producer.init_transactions, self._deadline())  # fences a former self, aborts its txn
            except KafkaException as exc:
                failure = o.kafka.failure(o.kafka_timeout_s, exc)
                if not isinstance(failure, KafkaUnreachableError):
                    raise failure from None  # refused credentials or TLS: the line names the setting
                raise KafkaUnreachableError(
                    f"cannot start: Kafka at {o.kafka.bootstrap_servers} did not initialise the transactional "
                    f"producer within {o.kafka_timeout_s:g}s ({exc.args[0].str()}); is the broker up?") from None
            self._loop(consumer, producer, stop, idle_exit_s)
        finally:
            lag_done.set()
            log.info("processor stopping instance=%s %s", o.instance_id, self.counters.line())
            if self._workers is not None:
                self._workers.shutdown()
            if self._in_txn:  # left by an error: abort it now rather than at transaction.timeout.ms
                with contextlib.suppress(KafkaException):
                    self._beat("abort_transaction")
                    producer.abort_transaction(min(o.stop_timeout_s, CALL_SLICE_S))
            self._beat("close")
            consumer.close()  # not bounded by librdkafka: serve() bounds it
            # A fenced or otherwise failed transactional producer raises its fatal error from flush();
            # raised here it would hide the error that ended the run (a fenced zombie then exited
            # with "unexpected KafkaException"). What it still holds belongs to an aborted transaction.
            try:
                producer.flush(min(o.stop_timeout_s, CALL_SLICE_S))
            except KafkaException as exc:
                log.debug("producer not flushed at stop error=%s", exc.args[0].str())
            self._beat("stopped")
        return self.counters

    def _loop(self, consumer: Consumer, producer: Producer, stop: threading.Event, idle_exit_s: float | None) -> None:
        o = self.options
        topics = sorted(self.transformers)
        consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke)
        log.info("processor started instance=%s group=%s transform=%s transform_threads=%d topics=%s", o.instance_id,
                 self.group_id, self.transform_kind, o.transform_threads, ",".join(topics))
        if self.transform_kind == "python" and o.native:
            log.warning("smt_native is not installed (scripts/setup builds it): the transform runs in pure Python, "
                        "about half as fast")
        last_record = last_counters = last_keyring = self._last_progress = time.monotonic()
        self._workers = ThreadPoolExecutor(max_workers=len(self.transformers), thread_name_prefix="transform")
        while not stop.is_set():
            self._beat("consume")
            msgs = consumer.consume(o.batch_size, o.poll_timeout_s)
            now = time.monotonic()
            if now - last_counters >= o.counters_interval_s > 0:
                log.info("counters instance=%s %s", o.instance_id, self.counters.line())
                last_counters = now
            if self._new_partitions:
                self._count_starts(consumer, producer)
            if not msgs:
                self._last_progress = now  # nothing waits: idle is not a stall
                if idle_exit_s is not None and now - last_record >= idle_exit_s:
                    break
                continue
            last_record = now
            if now - last_keyring >= o.keyring_check_s:
                self.keyring = self.keyring_source.current()  # picks up a rotation
                last_keyring = now
            self._process_batch(msgs, consumer, producer)
            if time.monotonic() - self._last_progress > o.stall_timeout_s:
                raise ProcessorStuckError(
                    f"no transaction committed for {o.stall_timeout_s:g}s while records wait "
                    f"(aborts={self.counters.aborts}, last error: {self.last_error or 'none'}); "
                    "exiting for the supervisor to restart")
        self._reset_starts(consumer, producer)

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assignment = {(tp.topic, tp.partition) for tp in partitions}
        self._new_partitions += [(tp.topic, tp.partition) for tp in partitions
                                 if (tp.topic, tp.partition) not in self._counted]
        log.info("assigned instance=%s partitions=%d", self.options.instance_id, len(partitions))

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # No transaction is open here: each batch commits before the next consume() call.
        self.assignment -= {(tp.topic, tp.partition) for tp in partitions}
        log.info("revoked instance=%s partitions=%d", self.options.instance_id, len(partitions))

    def _process_batch(self, msgs: list[Message], consumer: Consumer, producer: Producer) -> None:
        offsets: dict[tuple[str, int], int] = {}
        firsts: dict[tuple[str, int], int] = {}
        by_topic: dict[str, list[Message]] = {}
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise ProcessorError(f"the consumer failed: {err.str()}")
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error topic=%s partition=%s error=%s", msg.topic(), msg.partition(), err.str())
                continue
            topic, partition, offset = cast(str, msg.topic()), cast(int, msg.partition()), cast(int, msg.offset())
            firsts.setdefault((topic, partition), offset)
            offsets[(topic, partition)] = offset + 1
            by_topic.setdefault(topic, []).append(msg)
        if not offsets:
            self._last_progress = time.monotonic()
            return
        self._beat("begin_transaction")
        try:
            producer.begin_transaction()
        except KafkaException as exc:
            raise ProcessorError(f"cannot begin a transaction ({exc.args[0].str()}); another instance with id "
                                 f"{self.options.instance_id!r} may have fenced this one") from None
        self._in_txn = True
        self._beat("transform and produce")
        # Each topic's records are transformed on a worker thread (one policy each; the native
        # transform runs without the GIL), and each topic is produced, in order, as soon as its
        # transform is done: this thread produces one topic while the next is still transformed.
        # A partition's records keep their order; nothing else needs one.
        assert self._workers is not None  # run() made it
        jobs = {self._workers.submit(self.transform_batch, topic, [m.value() for m in topic_msgs]): topic
                for topic, topic_msgs in by_topic.items()}
        try:
            for job in as_completed(jobs):
                topic = jobs[job]
                for msg, out in zip(by_topic[topic], job.result(), strict=True):
                    self._handle(msg, topic, out, producer)
                self._beat("transform and produce")
        except _TxnAbortError as exc:
            wait(jobs)
            self._abort(producer, consumer, firsts, str(exc))
            return
        if self._commit(offsets, firsts, consumer, producer):
            self.counters.transactions += 1
            self.counters.last_commit_at = self._last_progress = time.monotonic()

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
        source = (topic, cast(int, msg.partition()), cast(int, msg.offset()))
        if self._escalate and source in self._escalate:  # the broker refused its output before
            out = RecordError(*self._escalate[source])
        if isinstance(out, RecordError):
            self._dead_letter(msg, topic, out.reason, out.detail, producer)
            return
        try:
            self._produce(producer, self.outputs[topic], out, msg.key(), msg.headers(), msg.timestamp()[1], source)
        except KafkaException as exc:  # refused locally (size, headers): the record is not lost, it goes to the DLQ
            self._dead_letter(msg, topic, PRODUCE_FAILED, exc.args[0].str(), producer)
            return
        c.produced += 1
        if out is None:
            c.tombstones += 1
        else:
            c.bytes_out += len(out)

    def _dead_letter(self, msg: Message, topic: str, reason: str, detail: str, producer: Producer) -> None:
        source = (topic, cast(int, msg.partition()), cast(int, msg.offset()))
        src = Source(topic, source[1], source[2], msg.timestamp()[1], msg.key(), msg.value())
        payload = source not in self._dlq_refused
        entry = dlq_entry(self.keyring, src, reason, detail, self.options.instance_id, self.dlq_max_bytes, payload)
        log.warning("dlq topic=%s partition=%s offset=%s reason=%s payload=%s detail=%s", topic, source[1], source[2],
                    reason, entry.payload, detail)
        try:
            self._produce(producer, self.dlq_topic, entry.value, entry.key, entry.headers, None, source, dlq=True)
        except KafkaException as exc:
            if not payload:
                raise ProcessorError(f"the DLQ topic {self.dlq_topic} refused a record without payload "
                                     f"({exc.args[0].str()}); check the topic and its max.message.bytes") from None
            log.warning("dlq record refused topic=%s partition=%s offset=%s error=%s; sending it without payload",
                        topic, source[1], source[2], exc.args[0].str())
            self._dlq_refused.add(source)
            entry = dlq_entry(self.keyring, src, reason, detail, self.options.instance_id, self.dlq_max_bytes, False)
            self._produce(producer, self.dlq_topic, entry.value, entry.key, entry.headers, None, source, dlq=True)
        self.counters.dlq += 1

    def _produce(self, producer: Producer, topic: str, value: bytes | None, key: bytes | None, headers: Any,
                 timestamp: int | None, source: tuple[str, int, int], dlq: bool = False) -> None:
        kwargs: dict[str, Any] = {"headers": headers} if headers else {}
        if timestamp and timestamp > 0:
            kwargs["timestamp"] = timestamp
        size = len(value or b"") + len(key or b"")
        if headers:
            size += sum(len(k) + len(v or b"") for k, v in headers)
        kwargs["on_delivery"] = partial(self._delivered, source, dlq, size)
        deadline = time.monotonic() + self.options.kafka_timeout_s
        while True:
            try:
                producer.produce(topic, value, key, **kwargs)
                return
            except BufferError:  # local queue full: let deliveries drain, within the bound
                if time.monotonic() > deadline:
                    raise _TxnAbortError(f"the producer queue stayed full for {self.options.kafka_timeout_s:g}s "
                                         f"(last error: {self.last_error or 'none'})") from None
                producer.poll(0.05)
            except KafkaException as exc:
                err = exc.args[0]
                if err.fatal() or err.txn_requires_abort() or err.code() == KafkaError._STATE:
                    raise _TxnAbortError(f"the transaction failed ({err.str()})") from None
                raise  # this record was refused: the caller sends it to the DLQ

    def _delivered(self, source: tuple[str, int, int], dlq: bool, size: int, err: KafkaError | None,
                   _msg: Message) -> None:
        if err is not None:  # runs in flush()/poll(), on this loop's thread
            self._failed[source] = (dlq, err, size)

    def _commit(self, offsets: dict[tuple[str, int], int], firsts: dict[tuple[str, int], int],
                consumer: Consumer, producer: Producer) -> bool:
        deadline = self._deadline()
        tps = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        try:
            self._flush(producer, deadline)
            if self._failed:
                raise _TxnAbortError(f"the broker refused {len(self._failed)} records")
            self._beat("send_offsets_to_transaction")
            self._retry(lambda t: producer.send_offsets_to_transaction(tps, consumer.consumer_group_metadata(), t),
                        deadline)
            self._beat("commit_transaction")
            self._retry(producer.commit_transaction, deadline)
        except KafkaException as exc:
            err = exc.args[0]
            if err.fatal():
                raise ProcessorError(
                    f"transaction failed and cannot be aborted ({err.str()}); another instance with id "
                    f"{self.options.instance_id!r} may have fenced this one"
                ) from None
            reason = err.str()
        except _TxnAbortError as exc:
            reason = str(exc)
        else:
            self._in_txn = False
            self._collateral_aborts = 0
            for tp in offsets:
                self._marked.pop(tp, None)  # the commit carries no start count: progress
            if self._escalate or self._dlq_refused:
                self._escalate = {s: r for s, r in self._escalate.items() if s[2] >= offsets.get(s[:2], 0)}
                self._dlq_refused = {s for s in self._dlq_refused if s[2] >= offsets.get(s[:2], 0)}
            return True
        self._abort(producer, consumer, firsts, reason)
        return False

    def _abort(self, producer: Producer, consumer: Consumer, firsts: dict[tuple[str, int], int], reason: str) -> None:
        log.warning("transaction aborted instance=%s reason=%s; rewinding partitions=%d", self.options.instance_id,
                    reason, len(firsts))
        self._beat("abort_transaction")
        try:
            self._retry(producer.abort_transaction, self._deadline())
        except KafkaException as exc:
            raise ProcessorError(
                f"cannot abort the transaction within its bound ({exc.args[0].str()}); exiting: a restart with "
                f"the same --instance-id fences it") from None
        self._in_txn = False
        self.counters.aborts += 1
        refused = {s: f for s, f in self._failed.items() if f[1].code() in RECORD_REFUSALS}
        self._failed.clear()
        if refused:
            self._refresh_limits()
        collateral = 0
        for source, (dlq, err, size) in refused.items():
            limit = self.dlq_max_bytes if dlq else self.limits.get(self.outputs[source[0]], self.out_max_bytes)
            if size + BATCH_FRAMING_BYTES <= limit:
                collateral += 1  # refused with a bigger record of its batch: produced again after the re-read
                continue
            if dlq and source in self._dlq_refused:
                raise ProcessorError(f"the DLQ topic {self.dlq_topic} refused a record without payload "
                                     f"({err.str()}); check the topic and its max.message.bytes")
            if dlq:
                self._dlq_refused.add(source)
            else:
                self._escalate[source] = (PRODUCE_FAILED, f"the broker refused the output record: {err.str()}")
            log.warning("record refused by the broker topic=%s partition=%s offset=%s dlq=%s bytes=%d error=%s; "
                        "re-reading it for the DLQ", *source, dlq, size, err.str())
        self._collateral_aborts = self._collateral_aborts + 1 if collateral else 0
        if self._collateral_aborts > MAX_COLLATERAL_ABORTS:
            # Batches of records that each fit keep being refused: an output topic's max.message.bytes
            # was lowered under the running processor, and only new clients size their batches anew.
            raise ProcessorError(f"the broker refused batches of records that each fit {self._collateral_aborts} "
                                 "times in a row: an output topic's max.message.bytes changed; restart the processor")
        for (t, p), first in firsts.items():
            try:
                consumer.seek(TopicPartition(t, p, first))
            except KafkaException as exc:  # revoked meanwhile: its next owner starts from the committed offset
                log.info("not rewound topic=%s partition=%s error=%s", t, p, exc.args[0].str())

    # ---- crash-loop detection --------------------------------------------------------------

    def _count_starts(self, consumer: Consumer, producer: Producer) -> None:
        """Count this start in the committed offset's metadata of each newly assigned partition
        (`pf.starts=N`); any commit clears it. A partition started `max_starts` times at the same
        offset without a commit stops the processor with CrashLoopError: one clear line, exit
        non-zero, instead of a silent crash loop under a supervisor."""
        o = self.options
        new, self._new_partitions = [tp for tp in self._new_partitions if tp in self.assignment], []
        if not new or o.max_starts <= 0:
            return
        self._counted.update(new)
        self._beat("committed")
        try:
            committed = consumer.committed([TopicPartition(t, p) for t, p in new], timeout=o.kafka_timeout_s)
        except KafkaException as exc:
            log.warning("start not counted: committed offsets unreadable error=%s", exc.args[0].str())
            return
        bumps = []
        for tp in committed:
            if tp.offset < 0:
                continue  # nothing committed yet: counted from the first commit on
            try:
                high = consumer.get_watermark_offsets(tp, timeout=o.kafka_timeout_s, cached=False)[1]
            except KafkaException:
                high = tp.offset + 1
            if tp.offset >= high:
                continue  # nothing waits there: an idle partition cannot crash a run
            n = starts_of(tp.metadata) + 1
            if n > o.max_starts:
                raise CrashLoopError(
                    f"crash loop: {n - 1} starts at {tp.topic} partition {tp.partition} offset {tp.offset} "
                    f"ended without a commit (limit {o.max_starts}); the record there, or the environment, fails "
                    "every run: read the previous runs' last log lines, fix the cause, then start once with "
                    "--max-starts 0")
            bumps.append(TopicPartition(tp.topic, tp.partition, tp.offset, metadata=f"{STARTS_META}{n}"))
        if bumps and self._commit_offsets(bumps, consumer, producer):
            self._marked.update({(tp.topic, tp.partition): tp.offset for tp in bumps})

    def _reset_starts(self, consumer: Consumer, producer: Producer) -> None:
        """A clean stop is not a crash: clear the start counts this run left on its partitions."""
        marked = [TopicPartition(t, p, off) for (t, p), off in self._marked.items() if (t, p) in self.assignment]
        if marked and self._commit_offsets(marked, consumer, producer):
            self._marked.clear()

    def _commit_offsets(self, tps: list[TopicPartition], consumer: Consumer, producer: Producer) -> bool:
        """A transaction of offsets only (their metadata), bounded; False (logged) if it failed."""
        self._beat("commit start count")
        deadline = self._deadline()
        try:
            producer.begin_transaction()
            self._in_txn = True
            self._retry(lambda t: producer.send_offsets_to_transaction(tps, consumer.consumer_group_metadata(), t),
                        deadline)
            self._retry(producer.commit_transaction, deadline)
            self._in_txn = False
            return True
        except KafkaException as exc:
            log.warning("start count not committed error=%s", exc.args[0].str())
            with contextlib.suppress(KafkaException):
                self._retry(producer.abort_transaction, self._deadline())
                self._in_txn = False
            return False


def starts_of(metadata: str | None) -> int:
    """The start count in an offset commit's metadata (0 when absent)."""
    if metadata and metadata.startswith(STARTS_META) and metadata[len(STARTS_META):].isdigit():
        return int(metadata[len(STARTS_META):])
    return 0


class _TxnAbortError(Exception):
    """The open transaction cannot commit (a refused delivery, a full queue): abort and re-read."""


def serve(processor: Processor, stop: threading.Event, idle_exit_s: float | None = None) -> Counters:
    """Run `processor` on a worker thread while this thread watches it. Returns its counters or
    re-raises its error; raises ProcessorStuckError when the loop is blocked in one step past
    `kafka_timeout_s` (+ a margin), or has not ended `stop_timeout_s` (+ a margin) after `stop`
    was set. Then the worker is still blocked inside librdkafka: the caller should exit the
    process (the CLI does, non-zero) rather than wait for it."""
    o = processor.options
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["counters"] = processor.run(stop, idle_exit_s)
        except BaseException as exc:  # re-raised below, on the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=work, name="processor", daemon=True)
    worker.start()
    stop_seen: float | None = None
    while worker.is_alive():
        worker.join(0.2)
        now = time.monotonic()
        if stop.is_set() and stop_seen is None:
            stop_seen = now
        if not worker.is_alive():
            break
        if stop_seen is not None and now - stop_seen > o.stop_timeout_s + STOP_MARGIN_S:
            raise ProcessorStuckError(
                f"did not stop within {o.stop_timeout_s + STOP_MARGIN_S:g}s of the stop signal (blocked in "
                f"{processor.phase}); exiting without it: a restart with the same --instance-id, or the broker "
                "after transaction.timeout.ms, aborts the open transaction")
        if now - processor.heartbeat > o.kafka_timeout_s + WATCHDOG_MARGIN_S:
            raise ProcessorStuckError(
                f"no progress for {now - processor.heartbeat:.0f}s: blocked in {processor.phase} past its "
                f"{o.kafka_timeout_s:g}s bound (last Kafka error: {processor.last_error or 'none'}); exiting for the "
                "supervisor to restart")
    if "error" in box:
        raise box["error"]
    return cast(Counters, box["counters"])
