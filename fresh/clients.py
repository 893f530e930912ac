"""Client factories for the external systems, built from Settings in one place.

Kafka Connect has its own REST client (`connectors.connect_api`) and ClickHouse its backends
(`clickhouse.backend`); these are the plain driver clients several parts share.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr
from pymongo import MongoClient

from fresh.errors import ConfigError, FreshError
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
