"""Integration tests talk to the real native local stack. `scripts/test` starts it; when
pytest is run alone, the session fixture starts it (idempotent: a running stack is reused)."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from clickhouse.backend import ChdbBackend, trust_kafka_ca
from clickhouse.migrate import migrate
from clickhouse.render import render_migrations
from fresh.kafka_connection import KafkaConnection
from fresh.pipeline import PipelineConfig
from fresh.settings import Settings
from smt.keyring import KeyringSource
from smt.processor import Processor, ProcessorOptions
from stack.kafka_security import grant_pipeline_acls
from stack.services import LocalStack


@pytest.fixture(scope="session", autouse=True)
def local_stack(settings: Settings) -> LocalStack:
    stack = LocalStack(settings)
    stack.up()
    # The embedded engine's Kafka tables in this process read over SASL_SSL: trust the stack's CA.
    trust_kafka_ca(settings.kafka("clickhouse"))
    return stack


@pytest.fixture(scope="session")
def bootstrap(settings: Settings) -> KafkaConnection:
    """The admin user's connection (a super user): tests' own producers, consumers and admin calls."""
    return settings.kafka("admin")


_RUN_TAGS: list[str] = []  # every tag this session put into names (see delete_tagged_topics)


@pytest.fixture(scope="session")
def new_tag() -> Callable[[], str]:
    """Makes a tag (10 hex digits) for the names of one test's topics, groups, connectors and
    databases, and remembers it for `delete_tagged_topics`."""

    def make() -> str:
        tag = uuid.uuid4().hex[:10]
        _RUN_TAGS.append(tag)
        return tag

    return make


@pytest.fixture
def unique(new_tag: Callable[[], str]) -> str:
    """A short id to make names unique per test; its Kafka topics are deleted after the session."""
    return new_tag()


@pytest.fixture(scope="session", autouse=True)
def delete_tagged_topics(local_stack: LocalStack, bootstrap: KafkaConnection) -> Iterator[None]:
    """After the session, delete the Kafka topics named with this session's tags, so a long-lived
    local broker does not collect thousands of test topics (CI starts from nothing anyway). Only
    this session's tags: another run on the same stack keeps its topics."""
    yield
    admin = AdminClient(bootstrap.config())
    try:
        topics = [t for t in admin.list_topics(timeout=30).topics if any(tag in t for tag in _RUN_TAGS)]
        for future in admin.delete_topics(topics, operation_timeout=30).values() if topics else ():
            future.result(60)
    except KafkaException as exc:  # cleanup only: the tests have passed or failed already
        logging.getLogger(__name__).warning("could not delete this session's topics: %s", exc)


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The one embedded ClickHouse data folder of this test process: chdb serves a single path
    per process, so every integration test that opens a chdb session uses this one."""
    return str(tmp_path_factory.mktemp("chdb"))


@contextmanager
def processor_thread(cfg: PipelineConfig, keyring: KeyringSource, kafka: KafkaConnection,
                     instance_id: str) -> Iterator[Processor]:
    """The PII processor for `cfg` running in a thread while the block runs; on exit it stops,
    must have ended within 60 s, and an exception of its thread is re-raised (the test fails with
    it, even if it passed otherwise), never lost."""
    processor = Processor(cfg, keyring, ProcessorOptions(kafka=kafka, instance_id=instance_id))
    stop = threading.Event()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            processor.run(stop)
        except BaseException as exc:  # re-raised below, on the test's thread
            errors.append(exc)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    try:
        yield processor
    finally:
        stop.set()
        worker.join(60)
    assert not worker.is_alive(), "the PII processor did not stop within 60 s"
    if errors:
        raise AssertionError(f"the PII processor thread failed: {errors[0]!r}") from errors[0]


@pytest.fixture
def running_processor(settings: Settings) -> Callable[..., Any]:
    """`with running_processor(cfg, keyring_source, instance_id):` (see `processor_thread`), as
    the processor's own Kafka user with the pipeline's ACLs for `cfg`."""

    def start(cfg: PipelineConfig, keyring: KeyringSource, instance_id: str) -> Any:
        grant_pipeline_acls(settings, cfg)
        return processor_thread(cfg, keyring, settings.kafka("processor"), instance_id)

    return start


@pytest.fixture
def secure_pipeline_running(settings: Settings, chdb_path: str, tmp_path: Path) -> Callable[..., Any]:
    """`with secure_pipeline_running(cfg, instance_id) as (keyring, backend):` runs the PII processor
    for `cfg` in a thread (`processor_thread`, with a fresh tmp keyring) and migrates ClickHouse on
    the embedded engine, each as its own Kafka user with the pipeline's ACLs (pf-processor,
    pf-clickhouse); on exit the processor stops, must have ended, and the engine session closes.
    An exception of the processor thread is re-raised on exit, never lost."""

    @contextmanager
    def run(cfg: PipelineConfig, instance_id: str) -> Iterator[tuple[KeyringSource, ChdbBackend]]:
        keyring = KeyringSource(tmp_path / "keyring.json", allow_unwrapped=True)
        keyring.generate()
        grant_pipeline_acls(settings, cfg)  # each its own user, as in `freshctl up`
        with processor_thread(cfg, keyring, settings.kafka("processor"), instance_id):
            backend = ChdbBackend(Path(chdb_path))
            try:
                migrate(backend, render_migrations(cfg, settings.kafka("clickhouse")), cfg.clickhouse.raw_database)
                yield keyring, backend
            finally:
                backend.close()

    return run
