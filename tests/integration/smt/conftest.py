"""Fixtures for the PII processor against the real broker: a pipeline config with unique topic
names, and Kafka helpers that produce CDC records and read topics to their end
(read_committed). CDC input is produced by tests/cdc_records.py in the connector's exact shape (pinned
against Debezium itself by tests/integration/connectors/test_debezium_capture.py), so these tests
control every record: bad ones, volumes, timing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from smt_kafka_io import Kafka, make_pipeline

from fresh.kafka_connection import KafkaConnection
from fresh.pipeline import PipelineConfig
from fresh.settings import Settings
from smt.keyring import KeyringSource
from smt.processor import Counters, Processor, ProcessorOptions, ensure_topics


@pytest.fixture
def kafka(bootstrap: KafkaConnection) -> Kafka:
    return Kafka(bootstrap)


@pytest.fixture
def secure_pipeline(settings: Settings, unique: str, kafka: Kafka) -> PipelineConfig:
    # loyalty_status gets deterministic encryption so the test can compare equal inputs.
    cfg = make_pipeline(settings, unique, {"customers": {"loyalty_status": "encrypt_deterministic"}})
    kafka.create(cfg.cdc_topics)
    ensure_topics(cfg, kafka.bootstrap)
    return cfg


class Running:
    """A processor in a thread of this test process."""

    def __init__(self, processor: Processor):
        self.processor = processor
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.result: Counters | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = self.processor.run(self.stop)
        except BaseException as exc:  # surfaced by stop_and_join
            self.error = exc

    def stop_and_join(self) -> Counters:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), "processor did not stop within 60s"
        if self.error:
            raise self.error
        assert self.result is not None
        return self.result


@pytest.fixture
def start_processor(bootstrap: KafkaConnection, unique: str) -> Iterator[Any]:
    running: list[Running] = []

    def start(cfg: PipelineConfig, keyring_source: KeyringSource, instance: str = "a", **opts: Any) -> Running:
        options = ProcessorOptions(kafka=bootstrap, instance_id=f"{unique}-{instance}", batch_size=2000,
                                   counters_interval_s=2.0, **opts)
        r = Running(Processor(cfg, keyring_source, options))
        running.append(r)
        return r

    yield start
    for r in running:
        if r.thread.is_alive():
            r.stop.set()
            r.thread.join(60)
