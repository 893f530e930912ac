"""Client factories for the external systems, built from Settings in one place.

Kafka Connect has its own REST client (`connectors.connect_api`) and ClickHouse its backends
(`clickhouse.backend`); these are the plain driver clients several parts share.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from pymongo import MongoClient

from fresh.errors import FreshError
from fresh.settings import Settings

_librdkafka_log = logging.getLogger("librdkafka")


class KafkaUnreachableError(FreshError):
    """No Kafka broker answered at the bootstrap address."""


class _LibrdkafkaLog(logging.LoggerAdapter[logging.Logger]):
    """librdkafka's own log lines (`%3|...|FAIL|...`), all at DEBUG: the error the caller raises
    says what matters in one line."""

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        self.logger.debug(msg, *args, **kwargs)


def _on_kafka_error(err: KafkaError) -> None:
    level = logging.WARNING if err.fatal() else logging.DEBUG
    _librdkafka_log.log(level, "librdkafka error code=%s fatal=%s reason=%s", err.name(), err.fatal(), err.str())


def kafka_config(bootstrap: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A librdkafka config for `bootstrap` whose logs and errors go to the `librdkafka` logger,
    never straight to stderr. Every Kafka client of the project should start from this."""
    return {"bootstrap.servers": bootstrap, "logger": _LibrdkafkaLog(_librdkafka_log, {}),
            "error_cb": _on_kafka_error, **(extra or {})}


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


def kafka_admin(settings: Settings, extra: dict[str, Any] | None = None) -> AdminClient:
    """An admin client for `settings.kafka_bootstrap`, with optional extra librdkafka settings."""
    return AdminClient(kafka_config(settings.kafka_bootstrap, extra))


def kafka_unreachable(bootstrap: str, timeout_s: float, exc: KafkaException) -> KafkaUnreachableError:
    """The one-line error for a broker that did not answer, naming the setting to change."""
    reason = exc.args[0].str() if exc.args and isinstance(exc.args[0], KafkaError) else str(exc)
    return KafkaUnreachableError(
        f"Kafka at {bootstrap} did not answer within {timeout_s:.0f}s ({reason}); start it "
        "(freshctl stack up) or set FRESH_KAFKA_BOOTSTRAP to a running broker")


def check_kafka(bootstrap: str, timeout_s: float = 5.0) -> None:
    """Raise `KafkaUnreachableError` (one line) unless a broker at `bootstrap` answers within `timeout_s`."""
    try:
        metadata = AdminClient(kafka_config(bootstrap)).list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise kafka_unreachable(bootstrap, timeout_s, exc) from None
    if not metadata.brokers:
        raise KafkaUnreachableError(f"Kafka at {bootstrap} reports no brokers; set FRESH_KAFKA_BOOTSTRAP")


def group_lag(bootstrap: str, group: str, topics: list[str], timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """Per topic: how many records `group` has not committed yet (the latest offset minus the
    committed one; a partition without a commit counts from its earliest offset). A topic that
    does not exist yet has no partitions and no lag."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import OffsetSpec

    admin = AdminClient(kafka_config(bootstrap))
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
        raise kafka_unreachable(bootstrap, timeout_s, exc) from None
    rows = []
    for topic in topics:
        keys = [k for k in ends.get("latest", {}) if k[0] == topic]
        lag = 0
        for key in keys:
            start = committed.get(key, -1)
            lag += max(0, ends["latest"][key] - (start if start >= 0 else ends["earliest"][key]))
        rows.append({"topic": topic, "partitions": len(keys), "lag": lag})
    return rows
