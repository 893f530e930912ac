"""The PII processor as a consumer group under rebalance, with real processes (`freshctl secure
run`, one per instance) over CDC topics of 3 partitions: during a stream of records the group
scales from 1 to 3 instances, one of the three is frozen with a transaction open (a zombie: the
group gives its partitions to the others, the coordinator aborts its transaction) and thawed, then
the group scales back to 1. `_secure`, read committed, must hold each CDC record exactly once:
the zombie's transaction never commits (its producer epoch and its group generation are stale:
KIP-447 fencing, `send_offsets_to_transaction` with the consumer's group metadata). Each
instance's transactional id is its own (the broker's transaction list shows one per instance).
Counts are printed; timings are never asserted.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import IsolationLevel, TopicPartition
from confluent_kafka.admin import OffsetSpec
from smt_kafka_io import Feeder, Kafka, identities_in, identities_out
from test_smt_faults import ProcessorProcess, wait_committed

from fresh.pipeline import PipelineConfig
from fresh.wait import wait_until
from smt.cdc_records import mixed_records
from smt.keyring import KeyringSource
from stack.services import LocalStack

PER_PHASE = 1500  # records fed during each step: scale up, the zombie, scale down
PACE = (25, 0.1)  # records per chunk, seconds between chunks: a stream (~250/s), not one burst


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
    total = {(t, p) for t in cfg.cdc_topics for p in range(3)}
    seen: list[dict[str, set]] = [{}]

    def done() -> bool:
        seen[0] = assignment(kafka, cfg.pii_processor.consumer_group)
        shares = list(seen[0].values())
        return (sorted(seen[0]) == sorted(instances) and all(shares)
                and set().union(*shares) == total and sum(map(len, shares)) == len(total))

    wait_until(done, timeout_s=300, what=f"{what}: members {instances}, last seen {sorted(seen[0])}", interval_s=0.5)
    return seen[0]


def open_on(kafka: Kafka, partitions: set[tuple[str, int]]) -> int:
    """Partitions among `partitions` whose last stable offset is below the high watermark."""
    admin = kafka.fresh_admin()
    tps = [TopicPartition(t, p) for t, p in partitions]

    def ends(level: IsolationLevel) -> dict[tuple[str, int], int]:
        futs = admin.list_offsets({tp: OffsetSpec.latest() for tp in tps}, isolation_level=level)
        return {(tp.topic, tp.partition): f.result(timeout=30).offset for tp, f in futs.items()}

    stable, high = ends(IsolationLevel.READ_COMMITTED), ends(IsolationLevel.READ_UNCOMMITTED)
    return sum(stable[k] < high[k] for k in high)


def transactional_ids(stack: LocalStack, bootstrap: str, prefix: str) -> list[str]:
    """The transactional ids the broker knows that start with `prefix` (Kafka's own tool)."""
    out = subprocess.run(
        ["java", "-cp", str(stack.jars_root / "kafka" / "*"), "org.apache.kafka.tools.TransactionsCommand",
         "--bootstrap-server", bootstrap, "list"], capture_output=True, text=True, timeout=300, check=True).stdout
    return sorted(line.split()[0] for line in out.splitlines() if line.startswith(prefix))


@pytest.fixture
def group_of(secure_pipeline: PipelineConfig, keyring_source: KeyringSource, kafka: Kafka, tmp_path: Path,
             unique: str) -> Iterator[dict[str, ProcessorProcess]]:
    made: dict[str, ProcessorProcess] = {}
    yield made
    for p in made.values():
        for run in p.runs:
            if run.poll() is None:
                run.send_signal(signal.SIGCONT)
        p.kill_all()


def test_scale_1_to_3_to_1_with_a_zombie_exactly_once(
    kafka: Kafka, secure_pipeline: PipelineConfig, keyring_source: KeyringSource, tmp_path: Path, unique: str,
    group_of: dict[str, ProcessorProcess], local_stack: LocalStack,
) -> None:
    cfg = secure_pipeline
    group = cfg.pii_processor.consumer_group
    records = list(mixed_records(cfg, 3 * PER_PHASE, seed=47))
    phases = [records[i * PER_PHASE:(i + 1) * PER_PHASE] for i in range(3)]

    def start(n: int) -> str:
        instance = f"{unique}-{n}"
        (tmp_path / instance).mkdir()
        group_of[instance] = ProcessorProcess(cfg, keyring_source, kafka.bootstrap, tmp_path / instance, instance)
        group_of[instance].start()
        return instance

    t0 = time.monotonic()
    first = start(1)
    wait_members(kafka, cfg, [first], "one instance")

    # 1 -> 3 during the stream.
    feeder = Feeder(kafka.bootstrap, phases[0], *PACE)
    others = [start(2), start(3)]
    shares = wait_members(kafka, cfg, [first, *others], "three instances")
    txn_ids = transactional_ids(local_stack, kafka.bootstrap, f"pii-{group}-")
    assert txn_ids == sorted(f"pii-{group}-{i}" for i in [first, *others]), txn_ids
    feeder.join()

    # A zombie: instance 3 frozen while its transaction is open on its own `_secure` partitions.
    zombie = group_of[others[1]]
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

    # 3 -> 1 during the stream (static members leave at their session timeout).
    feeder = Feeder(kafka.bootstrap, phases[2], *PACE)
    for instance in others:
        if group_of[instance].proc.poll() is None:
            group_of[instance].stop(60)
    wait_members(kafka, cfg, [first], "back to one instance")
    feeder.join()
    wait_committed(kafka, cfg, len(records), None, 300, f"{len(records)} CDC records committed by the group")
    code, _ = group_of[first].stop(60)
    assert code == 0, group_of[first].log()

    outs = kafka.read_to_end(cfg.secure_topics)
    want, got = identities_in(records, cfg), identities_out(outs)
    lost, duplicated = sum((want - got).values()), sum((got - want).values())
    consumed = {i: p.log(0).strip().splitlines()[-1] for i, p in group_of.items() if p.proc.poll() is not None}
    print(f"\nprocessor rebalance 1->3->1: CDC records={len(records)} _secure read_committed={len(outs)} "
          f"lost={lost} duplicated={duplicated} transactional ids={len(txn_ids)} zombie: open txn on "
          f"{frozen_with} partition(s) when frozen, exit after thaw={zombie_exit} "
          f"seconds={time.monotonic() - t0:.0f}; last lines: {consumed}")
    assert got == want and lost == duplicated == 0
    second = re.search(r"\bin=(\d+)", consumed.get(others[0], ""))
    assert second and int(second.group(1)) > 0, f"instance 2 processed nothing: {consumed}"
    assert kafka.open_transactions(cfg.secure_topics) == 0
