"""A seeded pipeline for the Grafana tests: the generator's default seed (`freshctl seed`: seed 42,
45 stores, 100 products, 175 customers, 1000 purchases) as CDC records in the shape our Debezium
connector config emits (fresh/cdc_record.py) -> the real Kafka broker -> the PII processor -> `_secure`
topics -> ClickHouse's Kafka tables (embedded engine) -> RAW -> MART. Unique names per run."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from clickhouse.backend import ChdbBackend
from clickhouse.migrate import migrate
from clickhouse.render import render_migrations
from fresh import cdc_record
from fresh.kafka_connection import KafkaConnection
from fresh.pipeline import PipelineConfig
from fresh.settings import Settings
from fresh.wait import wait_until
from generator.domain import Domain, Plan
from generator.seed import ENTITIES
from smt.keyring import KeyringSource
from smt.processor import Processor, ProcessorOptions, ensure_topics
from stack.kafka_security import engine_connection

DEFAULT_SEED = 42  # freshctl seed's default


@pytest.fixture(scope="package")
def seeded_pipeline(
    pipeline: PipelineConfig, bootstrap: KafkaConnection, settings: Settings, chdb_path: str,
    new_tag: Callable[[], str], tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[PipelineConfig, ChdbBackend, Plan]]:
    cfg = pipeline.isolated(f"gf{new_tag()}")
    plan = Plan(seed=DEFAULT_SEED)
    admin = AdminClient(bootstrap.config())
    for fut in admin.create_topics([NewTopic(t, num_partitions=2, replication_factor=1)
                                    for t in cfg.cdc_topics]).values():
        fut.result(30)
    ensure_topics(cfg, bootstrap)
    producer = Producer(bootstrap.config({"partitioner": "murmur2_random"}))
    domain = Domain(plan)
    for entity in ENTITIES:
        topic = cfg.entity(entity).cdc_topic
        for i, doc in enumerate(domain.stream(entity)):
            value = cdc_record.value(cdc_record.from_document(doc), "r", 1_735_689_600_000 + i)
            producer.produce(topic, value, cdc_record.key(doc["_id"]))
            producer.poll(0)
    assert producer.flush(60) == 0

    keyring = KeyringSource(tmp_path_factory.mktemp("gfkeys") / "keyring.json", allow_unwrapped=True)  # test keys
    keyring.generate()
    options = ProcessorOptions(kafka=bootstrap, instance_id=f"gf-{cfg.kafka.topic_prefix}")
    processor = Processor(cfg, keyring, options)
    stop = threading.Event()
    worker = threading.Thread(target=processor.run, args=(stop,), daemon=True)
    worker.start()
    backend = ChdbBackend(Path(chdb_path))
    try:
        migrate(backend, render_migrations(cfg, engine_connection(settings, cfg)), cfg.clickhouse.raw_database)
        mart = cfg.clickhouse.mart_database

        def mart_complete() -> bool:
            got = {e: int(backend.query(f"SELECT count() AS n FROM {mart}.{e} FINAL WHERE NOT is_deleted")[0]["n"])
                   for e in ENTITIES}
            return got == plan.counts

        wait_until(mart_complete, timeout_s=240, what=f"MART to hold the seeded documents {plan.counts}")
        yield cfg, backend, plan
    finally:
        stop.set()
        worker.join(60)
        backend.close()
    assert not worker.is_alive(), "the PII processor did not stop within 60 s"
