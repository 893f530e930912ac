"""The generator's MongoDB client and database: the URI from Settings, the name from the pipeline config."""

from __future__ import annotations

from typing import Any

from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import PyMongoError, ServerSelectionTimeoutError

from fresh.clients import mongo_client
from fresh.pipeline import PipelineConfig
from fresh.settings import Settings

# Entity name (pipeline.yaml) -> the business key field the generator's documents carry.
DOMAIN_KEYS = {"stores": "store_id", "products": "product_id", "customers": "customer_id", "purchases": "purchase_id"}


def connect(settings: Settings, *, timeout_s: float = 5.0) -> MongoClient[dict[str, Any]]:
    """A client for `settings.mongo_uri`. Datetimes come back timezone-aware (UTC), like the
    generator writes them, so a read-back document equals the generated one."""
    return mongo_client(settings, timeout_s=timeout_s, appname="freshctl-seed")


def database(
    client: MongoClient[dict[str, Any]], config: PipelineConfig, override: str | None = None
) -> Database[dict[str, Any]]:
    """The pipeline's database (`mongodb.database`), or `override` (tests use a unique one per run)."""
    return client[override or config.mongodb.database]


def describe(exc: PyMongoError) -> str:
    """One short line for a pymongo error (server selection errors carry a whole topology dump)."""
    if isinstance(exc, ServerSelectionTimeoutError):
        first = str(exc).split(",", 1)[0].split(" (configured timeouts", 1)[0]
        if "certificate verify failed" in first.lower():
            return (f"MongoDB's TLS certificate is not trusted ({first}); set FRESH_MONGO_TLS_CA_FILE to the CA "
                    "that signed it")
        return f"MongoDB is not reachable ({first}); start it (`freshctl stack up`) or set FRESH_MONGO_URI"
    return str(exc)
