"""The PII processor as a consumer group under rebalance, with real processes (`freshctl secure
run`, one per instance) over CDC topics of 3 partitions: during a stream of records the group
scales from 1 to 3 instances, one of the three is frozen with a transaction open (a zombie: the
group gives its partitions to the others, the coordinator aborts its transaction) and thawed, then
the group scales back to 1. `_secure`, read committed, must hold each CDC record exactly once:
the zombie's transaction never commits (its producer epoch and its group generation are stale:
KIP-447 fencing, `send_offsets_to_transaction` with the consumer's group metadata). Each
instance's transactional id is its own (the broker's transaction list shows one per instance).
The second test runs the same scale-out behind the real Debezium connector and ends with MART
equal to MongoDB. Counts are printed; timings are never asserted.
"""

from __future__ import annotations

import functools
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import test_pipeline_debezium_end_to_end
from change_stream import ChangeStream
from confluent_kafka import ConsumerGroupTopicPartitions, IsolationLevel, TopicPartition
from confluent_kafka.admin import OffsetSpec
from mart_vs_mongo import differences, wait_equal
from smt_kafka_io import PARTITIONS, Feeder, Kafka, identities_in, identities_out
from test_smt_faults import ProcessorProcess, wait_committed

from clickhouse.backend import ChdbBackend
from clickhouse.migrate import migrate
from clickhouse.render import render_migrations
from connectors.apply import apply
from connectors.render import render
from fresh.kafka_connection import KafkaConnection
from fresh.pipeline import PipelineConfig
from fresh.settings import Settings
from fresh.wait import wait_until
from generator.domain import Domain, Plan
from generator.seed import MongoSink, seed
from smt.keyring import KeyringSource
from smt.processor import ensure_topics
from stack.kafka_security import engine_connection, grant_pipeline_acls
from stack.services import LocalStack
from tests.cdc_records import CdcRecord, mixed_records

dbz_e2e = test_pipeline_debezium_end_to_end.e2e  # the fixture: an isolated Debezium pipeline, cleaned up after

PER_PHASE = 1500  # records fed during each step: scale up, the zombie, scale down
PACE = (25, 0.1)  # records per chunk, seconds between chunks: a stream (~250/s), not one burst
CHANGES, CHANGE_RATE = 600, 15.0  # the generator's change stream behind Debezium: ~40 s


def assignment(kafka: Kafka, group: str) -> dict[str, set[tuple[str, int]]]:
    """The group's members (static member id = instance id) and their partitions; {} while it rebalances."""
    admin = kafka.fresh_admin()  # held while its future runs
    desc = admin.describe_consumer_groups([group])[group].result(timeout=30)
    if str(desc.state).rsplit(".", 1)[-1] != "STABLE":
        return {}
    return {str(m.group_instance_id): {(tp.topic, tp.partition) for tp in m.assignment.topic_partitions}
            for m in desc.members}


def wait_members(kafka: Kafka, cfg: PipelineConfig, instances: list[str], what: str) -> dict[str, set]:
    """Until exactly `instances` are the stable group's members, each with a share of every partition."""
    total = {(t, p) for t in cfg.cdc_topics for p in range(PARTITIONS)}
    seen: list[dict[str, set]] = [{}]

    def done() -> bool:
        seen[0] = assignment(kafka, cfg.pii_processor.consumer_group)
        shares = list(seen[0].values())
        return (sorted(seen[0]) == sorted(instances) and all(shares)
                and set().union(*shares) == total and sum(map(len, shares)) == len(total))

    wait_until(done, timeout_s=300, what=f"{what}: members {instances}, last seen {sorted(seen[0])}", interval_s=0.5)
    return seen[0]


def committed_offsets(kafka: Kafka, group: str) -> dict[tuple[str, int], int]:
    admin = kafka.fresh_admin()  # held while its future runs
    fut = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
    return {(tp.topic, tp.partition): tp.offset for tp in fut.result(timeout=30).topic_partitions}


def wait_each_commits(kafka: Kafka, cfg: PipelineConfig, shares: dict[str, set], what: str) -> None:
    """Until every member has committed on at least one of its partitions since now."""
    group = cfg.pii_processor.consumer_group
    before = committed_offsets(kafka, group)

    def done() -> bool:
        now = committed_offsets(kafka, group)
        return all(any(now.get(tp, -1) > before.get(tp, -1) for tp in share) for share in shares.values())

    wait_until(done, timeout_s=300, what=what, interval_s=0.5)


def open_on(kafka: Kafka, partitions: set[tuple[str, int]]) -> int:
    """Partitions among `partitions` whose last stable offset is below the high watermark."""
    admin = kafka.fresh_admin()
    tps = [TopicPartition(t, p) for t, p in partitions]

    def ends(level: IsolationLevel) -> dict[tuple[str, int], int]:
        futs = admin.list_offsets({tp: OffsetSpec.latest() for tp in tps}, isolation_level=level)
        return {(tp.topic, tp.partition): f.result(timeout=30).offset for tp, f in futs.items()}

    stable, high = ends(IsolationLevel.READ_COMMITTED), ends(IsolationLevel.READ_UNCOMMITTED)
    return sum(stable[k] < high[k] for k in high)


def transactional_ids(stack: LocalStack, kafka: KafkaConnection, prefix: str, tmp: Path) -> list[str]:
    """The transactional ids the broker knows that start with `prefix` (Kafka's own tool, as the
    admin user: its client config in a 0600 file of the test's tmp folder)."""
    config = tmp / "admin-client.properties"
    config.touch(mode=0o600)
    config.write_text("\n".join(kafka.java_properties()) + "\n", encoding="utf-8")
    out = subprocess.run(
        ["java", "-cp", str(stack.jars_root / "kafka" / "*"), "org.apache.kafka.tools.TransactionsCommand",
         "--bootstrap-server", kafka.bootstrap_servers, "--command-config", str(config), "list"],
        capture_output=True, text=True, timeout=300, check=True).stdout
    return sorted(line.split()[0] for line in out.splitlines() if line.startswith(prefix))


class Instances(dict[str, ProcessorProcess]):
    """The processor instances of one test, by instance id: `start(cfg, n)` runs `freshctl secure
    run --instance-id <unique>-<n>` with its own folder for the config and the log."""

    def __init__(self, keyring: KeyringSource, bootstrap: KafkaConnection, tmp: Path, unique: str):
        super().__init__()
        self.keyring, self.bootstrap, self.tmp, self.unique = keyring, bootstrap, tmp, unique

    def start(self, cfg: PipelineConfig, n: int) -> str:
        instance = f"{self.unique}-{n}"
        (self.tmp / instance).mkdir()
        self[instance] = ProcessorProcess(cfg, self.keyring, self.bootstrap, self.tmp / instance, instance)
        self[instance].start()
        return instance

    def scale_down_to(self, keep: str) -> None:
        """SIGTERM every instance but `keep` (each commits or aborts its open transaction)."""
        for instance, p in self.items():
            if instance != keep and p.proc.poll() is None:
                code, _ = p.stop(60)
                assert code == 0, p.log()

    def last_lines(self) -> dict[str, str]:
        """Each exited instance's last log line: its counters (in=... out=...) or its error."""
        return {i: p.log(0).strip().splitlines()[-1] for i, p in self.items() if p.proc.poll() is not None}


@pytest.fixture
def instances(keyring_source: KeyringSource, kafka: Kafka, tmp_path: Path, unique: str) -> Iterator[Instances]:
    made = Instances(keyring_source, kafka.bootstrap, tmp_path, unique)
    yield made
    for p in made.values():
        for run in p.runs:
            if run.poll() is None:
                run.send_signal(signal.SIGCONT)  # a frozen zombie must be able to die
        p.kill_all()


def processed(lines: dict[str, str], instance: str) -> int:
    found = re.search(r"\bin=(\d+)", lines.get(instance, ""))
    return int(found.group(1)) if found else 0


def test_scale_1_to_3_to_1_with_a_zombie_exactly_once(
    kafka: Kafka, secure_pipeline: PipelineConfig, instances: Instances, local_stack: LocalStack, tmp_path: Path,
) -> None:
    cfg = secure_pipeline
    group = cfg.pii_processor.consumer_group
    records = list(mixed_records(cfg, 3 * PER_PHASE, seed=47))
    phases = [records[i * PER_PHASE:(i + 1) * PER_PHASE] for i in range(3)]

    t0 = time.monotonic()
    first = instances.start(cfg, 1)
    wait_members(kafka, cfg, [first], "one instance")

    # 1 -> 3 during the stream.
    feeder = Feeder(kafka.bootstrap, phases[0], *PACE)
    others = [instances.start(cfg, 2), instances.start(cfg, 3)]
    shares = wait_members(kafka, cfg, [first, *others], "three instances")
    txn_ids = transactional_ids(local_stack, kafka.bootstrap, f"pii-{group}-", tmp_path)
    assert txn_ids == sorted(f"pii-{group}-{i}" for i in [first, *others]), txn_ids
    feeder.join()

    # A zombie: instance 3 frozen while its transaction is open on its own `_secure` partitions.
    zombie = instances[others[1]]
    feeder = Feeder(kafka.bootstrap, phases[1], *PACE)
    zombie_out = {(cfg.entity_for_topic(t).secure_topic, p) for t, p in shares[others[1]]}
    for _ in range(200):
        zombie.proc.send_signal(signal.SIGSTOP)
        if open_on(kafka, zombie_out):
            break
        zombie.proc.send_signal(signal.SIGCONT)
        threading.Event().wait(0.05)  # let it run into its next transaction
    else:
        raise AssertionError("instance 3 never had a transaction open: the zombie would prove nothing")
    frozen_with = open_on(kafka, zombie_out)
    wait_members(kafka, cfg, [first, others[0]], "the zombie's partitions moved to the other two")
    feeder.join()
    wait_until(lambda: open_on(kafka, zombie_out) == 0, timeout_s=300,
               what="the coordinator to abort the zombie's open transaction")
    zombie.proc.send_signal(signal.SIGCONT)
    try:
        zombie_exit: int | None = zombie.proc.wait(60)  # a fenced instance may exit; or rejoin: both are fine
    except subprocess.TimeoutExpired:
        zombie_exit = None
    if zombie_exit:  # fenced: one clear line naming it, not an "unexpected" error
        last = zombie.log().strip().splitlines()[-1]
        assert "fenced" in last and "unexpected" not in last, last

    # 3 -> 1 during the stream (static members leave at their session timeout).
    feeder = Feeder(kafka.bootstrap, phases[2], *PACE)
    instances.scale_down_to(first)
    wait_members(kafka, cfg, [first], "back to one instance")
    feeder.join()
    wait_committed(kafka, cfg, len(records), None, 300, f"{len(records)} CDC records committed by the group")
    code, _ = instances[first].stop(60)
    assert code == 0, instances[first].log()

    outs = kafka.read_to_end(cfg.secure_topics)
    want, got = identities_in(records, cfg), identities_out(outs)
    lost, duplicated = sum((want - got).values()), sum((got - want).values())
    consumed = instances.last_lines()
    print(f"\nprocessor rebalance 1->3->1: CDC records={len(records)} _secure read_committed={len(outs)} "
          f"lost={lost} duplicated={duplicated} transactional ids={len(txn_ids)} zombie: open txn on "
          f"{frozen_with} partition(s) when frozen, exit after thaw={zombie_exit} "
          f"seconds={time.monotonic() - t0:.0f}; last lines: {consumed}")
    assert got == want and lost == duplicated == 0
    assert processed(consumed, others[0]) > 0, f"instance 2 processed nothing: {consumed}"
    assert kafka.open_transactions(cfg.secure_topics) == 0


def test_debezium_to_mart_while_the_group_scales_1_to_3_to_1(
    kafka: Kafka, dbz_e2e: dict[str, Any], keyring_source: KeyringSource, instances: Instances, chdb_path: str,
    settings: Settings,
) -> None:
    """The same group change with nothing stood in for: MongoDB -> the rendered Debezium connector
    -> CDC topics of 3 partitions (created by the test before the connector) -> the processor
    instances -> ClickHouse. During the generator's change stream the group goes from 1 to 3
    instances and back; then `_secure` (read committed) holds each CDC record exactly once and MART
    equals MongoDB, field for field."""
    cfg: PipelineConfig = dbz_e2e["cfg"]
    db = dbz_e2e["db"]
    sink = MongoSink(db, cfg)
    sink.ensure_indexes()
    seed(Domain(Plan(seed=11)), [sink], batch_size=500)
    kafka.create(cfg.cdc_topics)  # 3 partitions each; Debezium writes into them
    grant_pipeline_acls(settings, cfg)  # the processors and the engine read as their own users
    ensure_topics(cfg, kafka.bootstrap)
    backend = ChdbBackend(Path(chdb_path))
    try:
        migrate(backend, render_migrations(cfg, engine_connection(settings, cfg)), cfg.clickhouse.raw_database)
        t0 = time.monotonic()
        first = instances.start(cfg, 1)
        wait_members(kafka, cfg, [first], "one instance")
        apply(dbz_e2e["api"], render(cfg, dbz_e2e["local"], "local", only=["mongodb_source"]), dbz_e2e["local"],
              timeout_s=120)
        keyring = keyring_source.current()

        find = functools.partial(differences, cfg, backend, db, keyring)

        # The snapshot first, by one instance. Changes made while Debezium snapshots can reach MART
        # older than the snapshot's read of the same document (its source timestamp is the read's).
        wait_equal(find, 300, "snapshot")

        stream = ChangeStream(db, cfg, seed=11, changes=CHANGES, rate=CHANGE_RATE).start()
        steps = {"start": stream.written}
        others = [instances.start(cfg, 2), instances.start(cfg, 3)]
        shares = wait_members(kafka, cfg, [first, *others], "three instances")
        steps["three"] = stream.written
        wait_each_commits(kafka, cfg, shares, "each of the three instances to commit a transaction")
        instances.scale_down_to(first)
        wait_members(kafka, cfg, [first], "back to one instance")
        steps["one again"] = stream.written
        stream.finish(600)

        wait_equal(find, 300, f"after {CHANGES} changes")
        cdc = [CdcRecord(o.topic, o.key or b"", o.value) for o in kafka.read_to_end(cfg.cdc_topics)]
        wait_committed(kafka, cfg, len(cdc), None, 300, f"{len(cdc)} CDC records committed by the group")
        code, _ = instances[first].stop(60)
        assert code == 0, instances[first].log()
    finally:
        backend.close()
    outs = kafka.read_to_end(cfg.secure_topics)
    want, got = identities_in(cdc, cfg), identities_out(outs)
    lost, duplicated = sum((want - got).values()), sum((got - want).values())
    lines = instances.last_lines()
    print(f"\nprocessor rebalance 1->3->1 behind Debezium: CDC records={len(cdc)} _secure read_committed={len(outs)} "
          f"lost={lost} duplicated={duplicated} changes written at 3 instances / back at 1: {steps['three']} / "
          f"{steps['one again']} of {CHANGES}; processed per instance "
          f"{ {i: processed(lines, i) for i in instances} } seconds={time.monotonic() - t0:.0f}")
    assert got == want and lost == duplicated == 0
    assert all(processed(lines, i) > 0 for i in instances), lines
