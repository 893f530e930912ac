"""A unique MongoDB database per test, dropped afterwards (the local Mongo server is shared and in-memory).

mongo-java-server keeps an unbounded oplog in memory (about 3 KB per written purchase), so the
fixture also deletes the oplog entries of its own database; otherwise every run would leave its
writes in the shared server's heap until the server restarts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import MongoClient
from pymongo.database import Database

from fresh.settings import Settings
from generator.mongo import connect


@pytest.fixture(scope="session")
def mongo_client(settings: Settings) -> Iterator[MongoClient[dict[str, Any]]]:
    client = connect(settings)
    yield client
    client.close()


@pytest.fixture
def seed_db(mongo_client: MongoClient[dict[str, Any]], unique: str) -> Iterator[Database[dict[str, Any]]]:
    name = f"test_gen_{unique}"
    yield mongo_client[name]
    mongo_client.drop_database(name)
    mongo_client["local"]["oplog.rs"].delete_many({"ns": {"$regex": f"^{name}\\."}})
