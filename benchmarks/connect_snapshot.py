"""Debezium MongoDB through Kafka Connect: records/s of one connector task, for the capacity plan
(docs/scaling.md). Seeds a database of its own, registers an isolated copy of the pipeline's
connector (the local values), and reads the CDC topics' record timestamps (set by Connect's
producer): snapshot records/s = records / (last - first timestamp). Then a second seed of the
same plan rewrites every document while the connector streams: change-stream records/s the same
way. Also the CPU time the Connect worker and the Mongo server (local stack JVMs) used in each
phase: records per CPU-second do not depend on how many other processes share the cores.
Deletes its connector afterwards; the topics and the database stay for inspection.

    .venv/bin/python benchmarks/connect_snapshot.py --scale 20
    .venv/bin/python benchmarks/connect_snapshot.py --scale 100 --snapshot-only
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from connectors.apply import apply, delete_connector
from connectors.connect_api import ConnectApi
from connectors.render import render
from fresh.kafka_connection import KafkaConnection
from fresh.pipeline import PipelineConfig, load_pipeline_config
from fresh.settings import load_settings
from fresh.wait import wait_until
from generator.domain import Plan
from generator.seed import seed_database
from stack.services import LocalStack


def _timestamps(kafka: KafkaConnection, topics: list[str], start: dict[tuple[str, int], int]) -> list[int]:
    """Record timestamps (ms) of every record after `start` offsets, to the current end."""
    consumer = Consumer(kafka.config({"group.id": f"bench-{uuid.uuid4().hex[:8]}",
                                                "enable.auto.commit": False}))
    try:
        ends = _ends(consumer, topics)
        parts = [TopicPartition(t, p, start.get((t, p), 0)) for (t, p), end in ends.items()
                 if end > start.get((t, p), 0)]
        consumer.assign(parts)
        out: list[int] = []
        want = sum(end - start.get(tp, 0) for tp, end in ends.items())
        while len(out) < want:
            for msg in consumer.consume(10000, timeout=5):
                if msg.error() is None:
                    out.append(msg.timestamp()[1])
        return out
    finally:
        consumer.close()


def _ends(consumer: Consumer, topics: list[str]) -> dict[tuple[str, int], int]:
    meta = consumer.list_topics(timeout=30).topics
    return {(t, p): consumer.get_watermark_offsets(TopicPartition(t, p), timeout=30)[1]
            for t in topics if t in meta for p in meta[t].partitions}


def _cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of process `pid` (0 when it does not run)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rate(label: str, stamps: list[int], cpu: dict[str, float]) -> None:
    span = max((max(stamps) - min(stamps)) / 1000, 1e-3)
    per_cpu = ", ".join(f"{name} {s:.1f} CPU-s ({len(stamps) / s:,.0f} records per CPU-second)"
                        for name, s in cpu.items() if s > 0)
    print(f"{label}: {len(stamps)} records in {span:.1f}s (first to last record timestamp): "
          f"{len(stamps) / span:,.0f} records/s; {per_cpu}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=int, default=20, help="generator plan scale (1000 purchases + 175 customers each)")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--snapshot-only", action="store_true",
                    help="skip the change-stream phase (on the local Mongo server it is slow: docs/benchmarks.md)")
    args = ap.parse_args()
    settings = load_settings()
    tag = uuid.uuid4().hex[:8]
    raw: dict[str, Any] = load_pipeline_config(settings.pipeline_config).isolated(f"connbench{tag}").model_dump(
        mode="json", exclude_none=True)
    raw["mongodb"]["database"] = f"connbench{tag}"
    cfg = PipelineConfig.model_validate(raw)
    plan = Plan(seed=42, scale=args.scale)
    seeded = seed_database(settings, cfg, plan)
    total = sum(seeded.counts.values())
    print(f"seeded {total} documents into {cfg.mongodb.database} in {seeded.seconds:.1f}s; "
          f"CDC topics: {cfg.scale.partitions} partition(s) each", flush=True)

    api = ConnectApi.from_settings(settings.model_copy(update={"connect_timeout_s": 60.0}))
    rendered = render(cfg, settings, "local")  # the local values: the MongoDB source only
    probe = Consumer(settings.kafka("admin").config({"group.id": f"bench-{tag}"}))

    def records() -> int:
        return sum(_ends(probe, cfg.cdc_topics).values())

    stack = LocalStack(settings)

    def cpu() -> dict[str, float]:
        return {name: _cpu_s(stack.pid_of(name)) for name in ("connect", "mongo")}

    def used(before: dict[str, float]) -> dict[str, float]:
        return {name: s - before[name] for name, s in cpu().items()}

    try:
        t0, cpu0 = time.monotonic(), cpu()
        apply(api, rendered, settings, timeout_s=300)
        wait_until(lambda: records() >= total, timeout_s=args.timeout, what=f"{total} snapshot records",
                   interval_s=0.5, max_interval_s=2)
        print(f"snapshot: all {total} records in the CDC topics {time.monotonic() - t0:.1f}s after the PUT")
        _rate("snapshot", _timestamps(settings.kafka("admin"), cfg.cdc_topics, {}), used(cpu0))

        if args.snapshot_only:
            return
        start, cpu1 = _ends(probe, cfg.cdc_topics), cpu()
        again = seed_database(settings, cfg, Plan(seed=43, scale=args.scale))
        print(f"rewrote {sum(again.counts.values())} documents in {again.seconds:.1f}s "
              f"({sum(again.counts.values()) / again.seconds:,.0f} docs/s into the local Mongo server)", flush=True)
        wait_until(lambda: records() >= 2 * total, timeout_s=args.timeout, what=f"{total} change-stream records",
                   interval_s=0.5, max_interval_s=2)
        _rate("change stream (the Mongo server's CPU includes taking the writes)",
              _timestamps(settings.kafka("admin"), cfg.cdc_topics, start), used(cpu1))
    finally:
        probe.close()
        delete_connector(api, cfg.kafka.connector_name, timeout_s=60)


if __name__ == "__main__":
    main()
