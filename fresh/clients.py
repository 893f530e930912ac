"""Client factories for the external systems, built from Settings in one place.

Kafka Connect has its own REST client (`connectors.connect_api`) and ClickHouse its backends
(`clickhouse.backend`); these are the plain driver clients several parts share.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka.admin import AdminClient
from pymongo import MongoClient

from fresh.settings import Settings


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
    return AdminClient({"bootstrap.servers": settings.kafka_bootstrap, **(extra or {})})
