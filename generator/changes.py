"""Change mode: a steady stream of inserts, updates and deletes against seeded data, for CDC demos.

Operations follow a fixed cycle (CHANGE_CYCLE), so N operations always split into the same
counts per kind (`planned_counts`). Targets are drawn from a seeded random stream; an update or
delete whose target is gone (deleted earlier) or already final (a platinum customer, a purchase
that is no longer "completed") draws another target, so every counted operation changed a
document. After MAX_DRAWS misses the next eligible document at or after a random key is read
from MongoDB, and once every customer is platinum a membership lapses back to the first tier, so
change mode runs for hours: it stops only when no purchase is left to change.
Change events carry the wall-clock time in `updated_at`: they happen now, unlike seeded history.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.database import Database
from pymongo.errors import PyMongoError

from fresh.pipeline import PipelineConfig
from fresh.settings import Settings
from generator.domain import (
    LOYALTY_TIERS,
    PRODUCT_COUNT,
    Domain,
    GeneratorError,
    Plan,
    customer_id,
    derive_seed,
    id_index,
    product_id,
    purchase_id,
)
from generator.mongo import connect, database, describe

log = logging.getLogger(__name__)

INSERT = "insert_purchase"
PRICE = "update_product_price"
LOYALTY = "update_customer_loyalty"
STATUS = "update_purchase_status"
DELETE = "delete_purchase"
KINDS = (INSERT, PRICE, LOYALTY, STATUS, DELETE)
# One cycle of 10 operations: purchases arrive most often, deletes are rare.
CHANGE_CYCLE = (INSERT, PRICE, INSERT, LOYALTY, STATUS, INSERT, PRICE, LOYALTY, STATUS, DELETE)
MAX_DRAWS = 50  # targets tried per operation before giving up


def planned_counts(n: int) -> dict[str, int]:
    """How many operations of each kind `n` operations perform."""
    counts = dict.fromkeys(KINDS, 0)
    for i in range(n):
        counts[CHANGE_CYCLE[i % len(CHANGE_CYCLE)]] += 1
    return counts


class Pacer:
    """Spaces operations `1/rate` seconds apart on a fixed schedule (no drift). This is pacing to
    a rate, not waiting for a condition, so it sleeps until the next slot; rate 0 means no pacing."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if rate < 0:
            raise GeneratorError(f"rate must be 0 (as fast as possible) or more operations per second, got {rate}")
        self.interval = 1.0 / rate if rate else 0.0
        self.clock = clock
        self.sleep = sleep
        self.start: float | None = None

    def wait_turn(self, k: int) -> None:
        if not self.interval:
            return
        now = self.clock()
        if self.start is None:
            self.start = now
        delay = self.start + k * self.interval - now
        if delay > 0:
            self.sleep(delay)


@dataclass
class ChangeReport:
    counts: dict[str, int]
    seconds: float

    @property
    def rate(self) -> float:
        total = sum(self.counts.values())
        return total / self.seconds if self.seconds else 0.0


class ChangeRunner:
    """Applies change operations to one database holding a plan's seeded data."""

    def __init__(self, db: Database[dict[str, Any]], config: PipelineConfig, domain: Domain,
                 now: Callable[[], datetime] | None = None):
        self.db = db
        self.domain = domain
        # Test data, not secrets: a seeded, reproducible stream is the point.
        self.rng = random.Random(derive_seed(domain.plan.seed, "changes", 0))  # noqa: S311
        self.now = now or (lambda: datetime.now(UTC).replace(microsecond=0))
        self.products = db[config.entity("products").collection]
        self.customers = db[config.entity("customers").collection]
        self.purchases = db[config.entity("purchases").collection]
        try:
            self._customer_count = max(1, self.customers.estimated_document_count())
            self._next_purchase = self._first_free_purchase_index()
        except PyMongoError as exc:
            raise GeneratorError(f"cannot read database {db.name}: {describe(exc)}") from None

    def _first_free_purchase_index(self) -> int:
        last = self.purchases.find_one({}, {"_id": 1}, sort=[("_id", DESCENDING)])
        return id_index(last["_id"]) + 1 if last else 0

    def _draw(self, what: str, attempt: Callable[[], bool], fallback: Callable[[], bool] | None = None) -> None:
        for _ in range(MAX_DRAWS):
            if attempt():
                return
        # Random draws thin out as documents are deleted or become final; a query finds the rest.
        for _ in range(3):  # a concurrent writer may take the found target first
            if fallback is not None and fallback():
                return
        raise GeneratorError(
            f"found no target for {what} in {MAX_DRAWS} draws in database {self.db.name}; "
            "seed it first (`freshctl seed`) or re-seed to restore deleted documents"
        )

    def insert_purchase(self) -> None:
        index = self._next_purchase
        self._next_purchase += 1
        doc = self.domain.purchase(index, customers=self._customer_count)
        # A new purchase pays today's prices, which earlier price changes may have moved.
        ids = [item["product_id"] for item in doc["items"]]
        prices = {p["_id"]: p["price"] for p in self.products.find({"_id": {"$in": ids}}, {"price": 1})}
        for item in doc["items"]:
            item["unit_price"] = prices.get(item["product_id"], item["unit_price"])
            item["line_total"] = round(item["quantity"] * item["unit_price"], 2)
        doc["total"] = round(sum(item["line_total"] for item in doc["items"]), 2)
        doc["purchased_at"] = doc["updated_at"] = self.now()
        doc["status"] = "completed"
        self.purchases.insert_one(doc)

    def update_product_price(self) -> None:
        def attempt() -> bool:
            key = product_id(self.rng.randrange(PRODUCT_COUNT))
            current = self.products.find_one({"_id": key}, {"price": 1})
            if current is None:
                return False
            factor = 1 + self.rng.choice((-1, 1)) * self.rng.uniform(0.01, 0.15)
            price = max(1.0, round(current["price"] * factor, 2))
            if price == current["price"]:
                price = round(price + 1, 2)
            res = self.products.update_one({"_id": key, "price": current["price"]},
                                           {"$set": {"price": price, "updated_at": self.now()}})
            return res.modified_count == 1
        self._draw("a price update", attempt)

    def update_customer_loyalty(self) -> None:
        def upgrade(key: str, tier: str) -> bool:
            changed = LOYALTY_TIERS[LOYALTY_TIERS.index(tier) + 1] if tier != LOYALTY_TIERS[-1] else LOYALTY_TIERS[0]
            res = self.customers.update_one({"_id": key, "loyalty_status": tier},
                                            {"$set": {"loyalty_status": changed, "updated_at": self.now()}})
            return res.modified_count == 1

        def attempt() -> bool:
            key = customer_id(self.rng.randrange(self._customer_count))
            current = self.customers.find_one({"_id": key}, {"loyalty_status": 1})
            if current is None or current["loyalty_status"] == LOYALTY_TIERS[-1]:
                return False
            return upgrade(key, current["loyalty_status"])

        def fallback() -> bool:
            # Any customer below the top tier; when every one is platinum, a membership lapses to the first tier.
            start = customer_id(self.rng.randrange(self._customer_count))
            for condition in ({"loyalty_status": {"$ne": LOYALTY_TIERS[-1]}}, {}):
                for bound in ({"_id": {"$gte": start}}, {}):
                    doc = self.customers.find_one({**condition, **bound}, {"loyalty_status": 1},
                                                  sort=[("_id", ASCENDING)])
                    if doc is not None:
                        return upgrade(str(doc["_id"]), doc["loyalty_status"])
            return False
        self._draw("a loyalty change", attempt, fallback)

    def update_purchase_status(self) -> None:
        def attempt() -> bool:
            key = purchase_id(self.rng.randrange(self._next_purchase))
            status = self.rng.choice(("returned", "cancelled"))
            res = self.purchases.update_one({"_id": key, "status": "completed"},
                                            {"$set": {"status": status, "updated_at": self.now()}})
            return res.modified_count == 1

        def fallback() -> bool:
            found = self._next_at_or_after({"status": "completed"})
            if found is None:
                return False
            status = self.rng.choice(("returned", "cancelled"))
            res = self.purchases.update_one({"_id": found, "status": "completed"},
                                            {"$set": {"status": status, "updated_at": self.now()}})
            return res.modified_count == 1
        self._draw("a purchase status change", attempt, fallback)

    def delete_purchase(self) -> None:
        def attempt() -> bool:
            key = purchase_id(self.rng.randrange(self._next_purchase))
            return self.purchases.delete_one({"_id": key}).deleted_count == 1

        def fallback() -> bool:
            found = self._next_at_or_after({})
            return found is not None and self.purchases.delete_one({"_id": found}).deleted_count == 1
        self._draw("a purchase delete", attempt, fallback)

    def _next_at_or_after(self, condition: dict[str, Any]) -> str | None:
        """The `_id` of the first purchase matching `condition` at or after a random key, wrapping
        around to the first one: any eligible purchase, found by one or two indexed reads."""
        start = purchase_id(self.rng.randrange(max(1, self._next_purchase)))
        for bound in ({"_id": {"$gte": start}}, {}):
            doc = self.purchases.find_one({**condition, **bound}, {"_id": 1}, sort=[("_id", ASCENDING)])
            if doc is not None:
                return str(doc["_id"])
        return None

    def run(self, n: int, rate: float, progress: Callable[[str], None] | None = None,
            pacer: Pacer | None = None) -> ChangeReport:
        if n < 0:
            raise GeneratorError(f"--changes must be 0 or more, got {n}")
        pacer = pacer or Pacer(rate)
        ops = {INSERT: self.insert_purchase, PRICE: self.update_product_price,
               LOYALTY: self.update_customer_loyalty, STATUS: self.update_purchase_status,
               DELETE: self.delete_purchase}
        counts = dict.fromkeys(KINDS, 0)
        started = time.monotonic()
        for k in range(n):
            kind = CHANGE_CYCLE[k % len(CHANGE_CYCLE)]
            pacer.wait_turn(k)
            try:
                ops[kind]()
            except PyMongoError as exc:
                raise GeneratorError(
                    f"change {k + 1}/{n} ({kind}) failed in database {self.db.name}: {describe(exc)}"
                ) from None
            counts[kind] += 1
            log.debug("change n=%d kind=%s", k + 1, kind)
            if progress:
                progress(kind)
        return ChangeReport(counts=counts, seconds=time.monotonic() - started)


def run_changes(
    settings: Settings,
    config: PipelineConfig,
    plan: Plan,
    n: int,
    rate: float,
    *,
    database_name: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> ChangeReport:
    """Perform `n` changes at `rate` per second on the database seeded with `plan` (what
    `freshctl seed --changes` and the change mode of `freshctl up` run)."""
    client = connect(settings)
    try:
        runner = ChangeRunner(database(client, config, database_name), config, Domain(plan))
        return runner.run(n, rate, progress=progress)
    finally:
        client.close()
