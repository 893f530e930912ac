"""`freshctl secure health` (the compose processor's healthcheck) reads the processor group's real
lag on the CDC topics: records nobody committed make it fail, a commit makes it pass."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from fresh.kafka_connection import KafkaConnection
from fresh.pipeline import PipelineConfig
from fresh.settings import REPO_ROOT

FRESHCTL = str(Path(sys.executable).parent / "freshctl")


def _health(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FRESH_PIPELINE_CONFIG": str(config)}
    return subprocess.run([FRESHCTL, "secure", "health", *args], capture_output=True, text=True, env=env,
                          cwd=REPO_ROOT, timeout=60, check=False)


def test_health_follows_the_groups_committed_offsets(
    pipeline: PipelineConfig, bootstrap: KafkaConnection, new_tag: Callable[[], str], tmp_path: Path
) -> None:
    cfg = pipeline.isolated(new_tag())
    config = tmp_path / "pipeline.yaml"
    config.write_text(cfg.to_yaml(), encoding="utf-8")
    topic = cfg.cdc_topics[0]
    admin = AdminClient(bootstrap.config())
    for future in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]).values():
        future.result(timeout=30)

    assert _health(config, "--max-lag", "0").returncode == 0  # nothing to consume yet

    producer = Producer(bootstrap.config())
    for i in range(5):
        producer.produce(topic, value=b"{}", key=str(i).encode())
    assert producer.flush(30) == 0
    behind = _health(config, "--max-lag", "4")
    assert behind.returncode == 1, behind.stdout
    assert behind.stderr.startswith(f"error: processor group {cfg.pii_processor.consumer_group} is 5 records behind")
    assert _health(config, "--max-lag", "5").returncode == 0

    group = Consumer(bootstrap.config({"group.id": cfg.pii_processor.consumer_group}))
    try:
        group.commit(offsets=[TopicPartition(topic, 0, 5)], asynchronous=False)
    finally:
        group.close()
    caught_up = _health(config, "--max-lag", "0", "-o", "json")
    assert caught_up.returncode == 0, caught_up.stderr
    assert '"lag": 0' in caught_up.stdout
