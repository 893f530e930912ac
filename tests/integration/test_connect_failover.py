"""Kafka Connect failover on the local stack: two workers in one distributed group (`stack up
--connect-workers 2`), the rendered Debezium MongoDB connector on them, the PII processor and
ClickHouse behind. During a change stream the worker that runs the connector's task is SIGKILLed;
the task must move to the other worker (the group notices the dead member after its session
timeout and reassigns after `scheduled.rebalance.max.delay.ms`, 10 s on the local stack), capture
must resume from the offsets stored in the shared offsets topic (no second snapshot), and MART must
end equal to MongoDB, field for field (mart_vs_mongo.py). The test prints the counts (changes
written, CDC records, duplicates re-sent after the resume) and the failover time; timings are
printed, never asserted.
"""

from __future__ import annotations

import functools
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import test_pipeline_debezium_end_to_end
from change_stream import ChangeStream
from confluent_kafka import Consumer, TopicPartition
from mart_vs_mongo import differences, wait_equal

from connectors.apply import apply
from connectors.connect_api import ConnectApi
from connectors.render import render
from fresh.clients import kafka_admin
from fresh.kafka_connection import KafkaConnection
from fresh.pipeline import PipelineConfig
from fresh.settings import Settings
from fresh.wait import wait_until
from generator.domain import Domain, Plan
from generator.seed import MongoSink, seed
from smt.processor import ensure_topics
from stack.services import LocalStack

dbz_e2e = test_pipeline_debezium_end_to_end.e2e  # the fixture: an isolated Debezium pipeline, cleaned up after

CHANGES = 300  # the change stream: ~30 s at RATE, so the kill and the failover happen inside it
RATE = 10.0
KILL_AFTER = 60  # changes written before the kill


@pytest.fixture
def two_workers(local_stack: LocalStack, settings: Settings, unique: str) -> Iterator[LocalStack]:
    """The stack with two Connect workers in its group; afterwards what ran before runs again (a
    killed worker is restarted) and a worker this fixture started is stopped. Then it waits until
    the first worker forwards requests to the group's leader again (a stopped leader's URL answers
    "connection refused" until the group has rejoined), so the connector's own cleanup can run."""
    two = LocalStack(settings.model_copy(update={"connect_workers": 2}))
    before = [n for n in two.connect_names if two.pid_of(n)]
    two.up(["connect"])
    yield two
    if any(two.pid_of(n) is None for n in before):
        two.up(["connect"])
    for name in two.connect_names:
        if name not in before:
            two.stop_service(name)
    api = ConnectApi.from_settings(settings)
    ours = [c for c in api.list_connectors() if unique in c]
    if ours:  # a restart of failed instances only is forwarded to the leader and changes nothing here
        wait_until(lambda: [api.restart(c, include_tasks=True, only_failed=True) for c in ours], timeout_s=180,
                   what="the Connect group to have a reachable leader again")


def worker_api(stack: LocalStack, name: str) -> ConnectApi:
    return ConnectApi(stack.services[name].address, timeout_s=30)


def task_worker(api: ConnectApi, connector: str) -> tuple[str, str]:
    """(worker id, state) of the connector's only task, as the group's status topic says."""
    tasks = api.get_status(connector).get("tasks", [])
    assert len(tasks) == 1, f"{connector} has {len(tasks)} tasks; Debezium MongoDB runs one per replica set"
    return str(tasks[0]["worker_id"]), str(tasks[0]["state"])


def cdc_records(kafka: KafkaConnection, topics: list[str]) -> list[tuple[str, bytes | None, bytes | None]]:
    """Every record of `topics` from offset 0 to the current end: (topic, key, value)."""
    consumer = Consumer(kafka.config({"group.id": "unused", "enable.auto.commit": False}))
    try:
        meta = consumer.list_topics(timeout=30).topics
        ends = {}
        for t in topics:
            for p in meta[t].partitions:
                _low, high = consumer.get_watermark_offsets(TopicPartition(t, p), timeout=30)
                if high > 0:
                    ends[(t, p)] = high
        consumer.assign([TopicPartition(t, p, 0) for t, p in ends])
        out: list[tuple[str, bytes | None, bytes | None]] = []
        done: set[tuple[str, int]] = set()

        def at_end() -> bool:
            for msg in consumer.consume(5000, 0.5):
                if msg.error() is None:
                    key = (str(msg.topic()), int(msg.partition() or 0))
                    out.append((key[0], msg.key(), msg.value()))
                    if int(msg.offset() or 0) + 1 >= ends[key]:
                        done.add(key)
            return done == set(ends)

        wait_until(at_end, timeout_s=120, what=f"reading the CDC topics {topics} to their end", interval_s=0.01)
        return out
    finally:
        consumer.close()


def test_connect_worker_sigkill_moves_the_task_and_capture_resumes_from_stored_offsets(
    dbz_e2e: dict[str, Any], two_workers: LocalStack, settings: Settings,
    secure_pipeline_running: Callable[..., Any],
) -> None:
    cfg: PipelineConfig = dbz_e2e["cfg"]
    db = dbz_e2e["db"]
    name = cfg.kafka.connector_name
    sink = MongoSink(db, cfg)
    sink.ensure_indexes()
    seeded = seed(Domain(Plan(seed=7)), [sink], batch_size=500)
    documents = sum(seeded.counts.values())

    rendered = render(cfg, dbz_e2e["local"], "local", only=["mongodb_source"])
    apply(dbz_e2e["api"], rendered, dbz_e2e["local"], timeout_s=120)
    admin = kafka_admin(settings.kafka("admin"))
    wait_until(lambda: set(cfg.cdc_topics) <= set(admin.list_topics(timeout=5).topics), timeout_s=180,
               what=f"Debezium to create the CDC topics {cfg.cdc_topics}")
    ensure_topics(cfg, settings.kafka("admin"))
    apis = {n: worker_api(two_workers, n) for n in two_workers.connect_names}
    by_id = {f"127.0.0.1:{two_workers.services[n].address.rsplit(':', 1)[1]}": n for n in apis}

    with secure_pipeline_running(cfg, f"fo-{cfg.kafka.topic_prefix}") as (keyring_source, backend):
        keyring = keyring_source.current()

        find = functools.partial(differences, cfg, backend, db, keyring)

        wait_equal(find, 300, "snapshot")
        snapshot_records = len(cdc_records(settings.kafka("admin"), cfg.cdc_topics))
        offsets_before = apis["connect"].offsets(name)["offsets"]
        assert offsets_before, f"{name} has stored no source offset after its snapshot"

        # The change stream, on its own thread, at RATE changes per second.
        stream = ChangeStream(db, cfg, seed=7, changes=CHANGES, rate=RATE).start()
        wait_until(lambda: stream.written >= KILL_AFTER or stream.failed, timeout_s=300,
                   what=f"{KILL_AFTER} changes written before the kill")

        worker_id, state = task_worker(apis["connect"], name)
        assert state == "RUNNING" and worker_id in by_id, f"task on {worker_id} ({state}); workers {sorted(by_id)}"
        victim = by_id[worker_id]
        survivor = next(n for n in apis if n != victim)
        killed_at = time.monotonic()
        written_at_kill = stream.written
        pid = two_workers.kill(victim, signal.SIGKILL)
        print(f"\nSIGKILLed Connect worker {victim} (pid {pid}, {worker_id}) after {written_at_kill} changes")

        def moved() -> bool:
            now_on, now_state = task_worker(apis[survivor], name)
            return now_on != worker_id and now_state == "RUNNING"

        wait_until(moved, timeout_s=300, what=f"the task of {name} to run on {survivor}", interval_s=0.5)
        failover_s = time.monotonic() - killed_at
        written_at_move = stream.written

        stream.finish(600)
        wait_equal(find, 300, f"after {CHANGES} changes and the failover")

    records = cdc_records(settings.kafka("admin"), cfg.cdc_topics)
    resent = sum(n - 1 for n in Counter(records).values() if n > 1)
    snapshot_reads = sum(1 for _t, _k, v in records if v is not None and b'"__op":"r"' in v.replace(b" ", b""))
    offsets_after = apis[survivor].offsets(name)["offsets"]
    print(f"connect failover: documents seeded={documents} changes written={CHANGES} "
          f"(at kill {written_at_kill}, at task move {written_at_move}) CDC records={len(records)} "
          f"(snapshot {snapshot_records}, after it {len(records) - snapshot_records}) "
          f"duplicates re-sent={resent} failover={failover_s:.1f}s (SIGKILL -> task RUNNING on {survivor})")
    assert snapshot_reads == documents, "the moved task snapshotted again instead of resuming from stored offsets"
    assert offsets_after and offsets_after != offsets_before, "the source offsets did not advance after the move"
