"""Client factories for the external systems, built from Settings in one place.

Kafka Connect has its own REST client (`connectors.connect_api`) and ClickHouse its backends
(`clickhouse.backend`); these are the plain driver clients several parts share.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr
from pymongo import MongoClient

from fresh.errors import ConfigError, FreshError
from fresh.kafka_connection import KafkaConnection, KafkaUnreachableError
from fresh.settings import Settings

__all__ = ["KafkaUnreachableError", "check_kafka", "group_lag", "kafka_admin", "mongo_client"]


# ---- MongoDB: the one URI builder (TLS options from typed settings; docs/security.md) ------------

_MONGO_INSECURE_OPTIONS = ("tlsinsecure", "tlsallowinvalidcertificates", "tlsallowinvalidhostnames")


def mongo_connection_uri(settings: Settings) -> SecretStr:
    """`FRESH_MONGO_URI` with the TLS settings added as URI options (`tls=true`, `tlsCAFile`,
    `tlsCertificateKeyFile`). The result is a `SecretStr` (it may hold a password): pass it on,
    never print it; `redact_uri` gives the printable form."""
    files = {"FRESH_MONGO_TLS_CA_FILE": ("tlsCAFile", settings.mongo_tls_ca_file),
             "FRESH_MONGO_TLS_CERT_KEY_FILE": ("tlsCertificateKeyFile", settings.mongo_tls_cert_key_file)}
    if not settings.mongo_tls:
        if any(path is not None for _, path in files.values()):
            raise ConfigError("setting FRESH_MONGO_TLS_CA_FILE / FRESH_MONGO_TLS_CERT_KEY_FILE is set but "
                              "FRESH_MONGO_TLS is not: set FRESH_MONGO_TLS=true or unset the files")
        return settings.mongo_uri
    parts = urlsplit(settings.mongo_uri.get_secret_value())
    query = parse_qsl(parts.query, keep_blank_values=True)
    present = {k.lower(): v.lower() for k, v in query}
    for option in _MONGO_INSECURE_OPTIONS:
        if present.get(option, "false") != "false":
            raise ConfigError(f"setting FRESH_MONGO_URI: {option} turns certificate checks off; remove it "
                              "(trust a private CA with FRESH_MONGO_TLS_CA_FILE)")
    if present.get("tls", present.get("ssl", "true")) != "true":
        raise ConfigError("setting FRESH_MONGO_URI says tls=false, which contradicts FRESH_MONGO_TLS=true; "
                          "remove the option from the URI")
    wanted = {"tls": "true"}
    for setting, (option, path) in files.items():
        if path is None:
            continue
        if not path.is_file():
            raise ConfigError(f"setting {setting}: no file {path}")
        wanted[option] = str(path)
    owned = {k.lower() for k in wanted} | {"ssl"}
    kept = [(k, v) for k, v in query if k.lower() not in owned]
    text = urlencode([*kept, *wanted.items()], safe="/")
    return SecretStr(urlunsplit((parts.scheme, parts.netloc, parts.path or "/", text, parts.fragment)))


def redact_uri(uri: str) -> str:
    """`uri` with its password replaced, for messages and logs."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def mongo_client(
    settings: Settings, *, timeout_s: float = 5.0, appname: str = "freshctl"
) -> MongoClient[dict[str, Any]]:
    """A client for `settings.mongo_uri` with the TLS settings (`mongo_connection_uri`).
    Datetimes come back timezone-aware (UTC)."""
    return MongoClient(
        mongo_connection_uri(settings).get_secret_value(),
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


EXACT_LAG_LIMIT = 10_000  # offsets per partition up to which group_lag counts records one by one


def count_records(kafka: KafkaConnection, ranges: dict[tuple[str, int], tuple[int, int]],
                  timeout_s: float = 10.0) -> int:
    """Committed records in each partition's offset range [start, end). Offsets alone overcount on
    transactional topics (every transaction leaves a commit marker that takes an offset)."""
    from confluent_kafka import Consumer, TopicPartition

    todo = {tp: r for tp, r in ranges.items() if r[1] > r[0]}
    if not todo:
        return 0
    consumer = Consumer(kafka.config({"group.id": f"fresh-count-{time.time_ns()}", "enable.auto.commit": False,
                                      "isolation.level": "read_committed", "log_level": 0}))
    try:
        consumer.assign([TopicPartition(t, p, start) for (t, p), (start, _end) in todo.items()])
        count, deadline = 0, time.monotonic() + timeout_s
        while todo and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.2):
                if msg.error() is None and (msg.topic(), msg.partition()) in todo:
                    count += 1
            for tp in consumer.position([TopicPartition(t, p) for t, p in todo]):
                if tp.offset >= todo[(tp.topic, tp.partition)][1]:
                    del todo[(tp.topic, tp.partition)]
        if todo:
            raise FreshError(f"counting records timed out after {timeout_s:.0f}s on {sorted(todo)}")
        return count
    finally:
        consumer.close()


def group_lag(kafka: KafkaConnection, group: str, topics: list[str], timeout_s: float = 10.0,
              exact_up_to: int = EXACT_LAG_LIMIT) -> dict[str, int | None]:
    """Per topic: the records after `group`'s committed offsets (a partition without a commit
    counts from its low watermark) up to the high watermarks; None when the topic does not exist.
    Counted exactly (transaction markers are not records) up to `exact_up_to` offsets per
    partition, beyond that the offset difference. The one definition of a group's lag: `freshctl
    status`, `secure health` and the processor's `lag=` counter all read it."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(kafka.config({"group.id": group, "enable.auto.commit": False, "log_level": 0}))
    lags: dict[str, int | None] = {}
    exact: dict[tuple[str, int], tuple[int, int]] = {}
    try:
        meta = consumer.list_topics(timeout=timeout_s).topics
        for topic in topics:
            if topic not in meta:
                lags[topic] = None
                continue
            lags[topic] = 0
            parts = [TopicPartition(topic, p) for p in meta[topic].partitions]
            for tp in consumer.committed(parts, timeout=timeout_s):
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=timeout_s)
                start = tp.offset if tp.offset >= 0 else low
                if high - start > exact_up_to:
                    lags[topic] = (lags[topic] or 0) + high - start
                else:
                    exact[(topic, tp.partition)] = (start, high)
    except KafkaException as exc:
        raise kafka.failure_of(consumer, timeout_s, exc) from None
    finally:
        consumer.close()
    for topic in topics:
        mine = {k: r for k, r in exact.items() if k[0] == topic}
        if mine:
            lags[topic] = (lags[topic] or 0) + count_records(kafka, mine, timeout_s)
    return lags
