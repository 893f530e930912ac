"""Client factories for the external systems, built from Settings in one place.

Kafka Connect has its own REST client (`connectors.connect_api`) and ClickHouse its backends
(`clickhouse.backend`); these are the plain driver clients several parts share.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from pymongo import MongoClient

from fresh.kafka_connection import KafkaConnection, KafkaUnreachableError
from fresh.settings import Settings

__all__ = ["KafkaUnreachableError", "check_kafka", "group_lag", "kafka_admin", "mongo_client"]


def mongo_client(
    settings: Settings, *, timeout_s: float = 5.0, appname: str = "freshctl"
) -> MongoClient[dict[str, Any]]:
    """A client for `settings.mongo_uri`. Datetimes come back timezone-aware (UTC)."""
    return MongoClient(
        settings.mongo_uri.get_secret_value(),
        tz_aware=True,
        appname=appname,
        serverSelectionTimeoutMS=int(timeout_s * 1000),
    )


def kafka_admin(kafka: KafkaConnection, extra: dict[str, Any] | None = None) -> AdminClient:
    """An admin client for `kafka` (usually `settings.kafka("admin")`), with optional extra librdkafka settings."""
    return AdminClient(kafka.config(extra))


def check_kafka(kafka: KafkaConnection, timeout_s: float = 5.0) -> None:
    """Raise one line (unreachable, refused credentials, untrusted certificate) unless a broker
    answers `kafka` within `timeout_s`."""
    admin = kafka_admin(kafka)
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise kafka.failure_of(admin, timeout_s, exc) from None
    if not metadata.brokers:
        raise kafka.failure_of(admin, timeout_s)


def group_lag(kafka: KafkaConnection, group: str, topics: list[str], timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """Per topic: how many records `group` has not committed yet (the latest offset minus the
    committed one; a partition without a commit counts from its earliest offset). A topic that
    does not exist yet has no partitions and no lag."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import OffsetSpec

    admin = kafka_admin(kafka)
    try:
        metadata = admin.list_topics(timeout=timeout_s)
        parts = [TopicPartition(t, p) for t in topics if t in metadata.topics for p in metadata.topics[t].partitions]
        ends: dict[str, dict[tuple[str, int], int]] = {}
        for name, spec in (("latest", OffsetSpec.latest()), ("earliest", OffsetSpec.earliest())):
            futures = admin.list_offsets({tp: spec for tp in parts}, request_timeout=timeout_s) if parts else {}
            ends[name] = {(tp.topic, tp.partition): f.result(timeout=timeout_s).offset for tp, f in futures.items()}
        committed: dict[tuple[str, int], int] = {}
        if parts:
            request = [ConsumerGroupTopicPartitions(group, parts)]
            result = admin.list_consumer_group_offsets(request, request_timeout=timeout_s)[group].result(timeout_s)
            committed = {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions or []}
    except KafkaException as exc:
        raise kafka.failure_of(admin, timeout_s, exc) from None
    rows = []
    for topic in topics:
        keys = [k for k in ends.get("latest", {}) if k[0] == topic]
        lag = 0
        for key in keys:
            start = committed.get(key, -1)
            lag += max(0, ends["latest"][key] - (start if start >= 0 else ends["earliest"][key]))
        rows.append({"topic": topic, "partitions": len(keys), "lag": lag})
    return rows
