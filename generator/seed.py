"""Stream a plan's documents, in batches, into sinks: MongoDB (unordered bulk upserts) and JSON Lines.

Memory stays flat: one batch per sink is alive at a time (plus, for MongoDB, the batches in
flight), whatever the scale. Re-seeding replaces each document by `_id` (= its business key), so
a second run with the same seed changes nothing and creates no duplicates.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from bson import json_util
from pymongo import MongoClient, ReplaceOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError, PyMongoError

from fresh.pipeline import PipelineConfig
from fresh.settings import Settings
from generator.domain import Document, Domain, GeneratorError, Plan
from generator.mongo import DOMAIN_KEYS, connect, database, describe

log = logging.getLogger(__name__)

Progress = Callable[[str, int], None]
ENTITIES = tuple(DOMAIN_KEYS)  # write order: referenced documents first


def check_config(config: PipelineConfig) -> None:
    """The pipeline config must name the four entities with the business keys the documents carry."""
    for name, key in DOMAIN_KEYS.items():
        entity = config.entity(name)
        if entity.business_key != key:
            raise GeneratorError(
                f"pipeline config gives entity {name!r} the business key {entity.business_key!r}, but the "
                f"generator's {name} documents are keyed by {key!r}; set entities.{name}.business_key: {key}"
            )


def batched(docs: Iterable[Document], size: int) -> Iterator[list[Document]]:
    if size < 1:
        raise GeneratorError(f"batch size must be at least 1, got {size}")
    batch: list[Document] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class Sink(Protocol):
    def write(self, entity: str, batch: list[Document]) -> None: ...

    def close(self) -> None: ...


@dataclass
class WriteTotals:
    upserted: int = 0
    matched: int = 0
    modified: int = 0


class MongoSink:
    """Unordered bulk `ReplaceOne(upsert=True)` by `_id`, up to `workers` batches in flight (the
    next batch is generated while the server stores the previous ones)."""

    def __init__(self, db: Database[dict[str, Any]], config: PipelineConfig, workers: int = 2):
        self.db = db
        self.config = config
        self.totals: dict[str, WriteTotals] = {}
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="seed-write")
        self._in_flight: deque[Future[None]] = deque()
        self._limit = max(1, workers)

    def ensure_indexes(self) -> list[str]:
        """A unique index on each business key. Idempotent: creating an existing index is a no-op."""
        created = []
        for name in ENTITIES:
            entity = self.config.entity(name)
            try:
                created.append(
                    self.db[entity.collection].create_index(
                        entity.business_key, unique=True, name=f"{entity.business_key}_unique"
                    )
                )
            except PyMongoError as exc:
                raise GeneratorError(
                    f"cannot create index on {self.db.name}.{entity.collection}: {describe(exc)}"
                ) from None
        return created

    def _write(self, entity: str, batch: list[Document]) -> None:
        collection = self.db[self.config.entity(entity).collection]
        ops = [ReplaceOne({"_id": doc["_id"]}, doc, upsert=True) for doc in batch]
        try:
            result = collection.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:
            first = (exc.details.get("writeErrors") or [{}])[0]
            raise GeneratorError(
                f"{len(exc.details.get('writeErrors', []))} of {len(ops)} writes to {collection.full_name} failed; "
                f"first: {first.get('errmsg', exc)}"
            ) from None
        except PyMongoError as exc:
            raise GeneratorError(f"writing to {collection.full_name} failed: {describe(exc)}") from None
        totals = self.totals.setdefault(entity, WriteTotals())
        totals.upserted += result.upserted_count
        totals.matched += result.matched_count
        totals.modified += result.modified_count

    def write(self, entity: str, batch: list[Document]) -> None:
        while len(self._in_flight) >= self._limit:
            self._in_flight.popleft().result()
        self._in_flight.append(self._pool.submit(self._write, entity, batch))

    def flush(self) -> None:
        while self._in_flight:
            self._in_flight.popleft().result()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)


class JsonlSink:
    """One `<collection>.jsonl` per collection: MongoDB Extended JSON (relaxed), one document a line,
    keys in document order, so `mongoimport --file stores.jsonl` loads the same documents."""

    def __init__(self, directory: Path, config: PipelineConfig):
        self.directory = directory
        self.config = config
        self._files: dict[str, IO[str]] = {}
        self.paths: dict[str, Path] = {}
        directory.mkdir(parents=True, exist_ok=True)

    def write(self, entity: str, batch: list[Document]) -> None:
        fh = self._files.get(entity)
        if fh is None:
            path = self.directory / f"{self.config.entity(entity).collection}.jsonl"
            fh = self._files[entity] = path.open("w", encoding="utf-8", newline="\n")
            self.paths[entity] = path
        fh.writelines(dumps_jsonl(doc) + "\n" for doc in batch)

    def close(self) -> None:
        for fh in self._files.values():
            fh.close()
        self._files.clear()


def dumps_jsonl(doc: Document) -> str:
    return json_util.dumps(doc, json_options=json_util.RELAXED_JSON_OPTIONS, ensure_ascii=False)


@dataclass
class SeedReport:
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def seed(
    domain: Domain,
    sinks: list[Sink],
    *,
    batch_size: int = 1000,
    entities: Iterable[str] = ENTITIES,
    progress: Progress | None = None,
) -> SeedReport:
    """Build every document of the plan once and hand each batch to every sink, in order
    stores, products, customers, purchases (so references point at documents already written)."""
    report = SeedReport()
    started = time.monotonic()
    try:
        for entity in entities:
            count = 0
            for batch in batched(domain.stream(entity), batch_size):
                for sink in sinks:
                    sink.write(entity, batch)
                count += len(batch)
                if progress:
                    progress(entity, len(batch))
            report.counts[entity] = count
            log.info("seeded entity=%s documents=%d", entity, count)
    finally:
        for sink in sinks:
            sink.close()
    report.seconds = time.monotonic() - started
    return report


def seed_targets(database_name: str, export_dir: Path | None, to_mongo: bool) -> list[str]:
    return ([f"mongodb database {database_name}"] if to_mongo else []) + ([f"{export_dir}/"] if export_dir else [])


def seed_database(
    settings: Settings,
    config: PipelineConfig,
    plan: Plan,
    *,
    database_name: str | None = None,
    export_dir: Path | None = None,
    to_mongo: bool = True,
    batch_size: int = 1000,
    workers: int = 2,
    progress: Progress | None = None,
) -> SeedReport:
    """Seed MongoDB (upserts by business key, indexes created if missing) and/or export JSON Lines:
    what `freshctl seed` and `freshctl up` run."""
    check_config(config)
    domain = Domain(plan)
    sinks: list[Sink] = []
    client: MongoClient[dict[str, Any]] | None = None
    try:
        if to_mongo:
            client = connect(settings)
            mongo = MongoSink(database(client, config, database_name), config, workers=workers)
            mongo.ensure_indexes()
            sinks.append(mongo)
        if export_dir:
            sinks.append(JsonlSink(export_dir, config))
        return seed(domain, sinks, batch_size=batch_size, progress=progress)
    finally:
        if client is not None:
            client.close()
