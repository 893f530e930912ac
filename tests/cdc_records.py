"""Test and benchmark builders of CDC records in the contract's shape (fresh/cdc_record.py: what
Debezium writes with our connector config): seeded documents per entity and streams of mixed
inserts, updates, deletes and tombstones. Every test and benchmark of a downstream part uses
these instead of hand-rolling JSON. Not product code: the product only reads CDC records.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fresh.cdc_record import delete_value, key, value
from fresh.pipeline import PipelineConfig

BASE_MS = 1_700_000_000_000
FIRST = ["Anna", "Ivan", "Maria", "Oleg", "Elena", "John", "Olga", "Pavel", "Sofia", "Mark", "Nina", "Petr"]
LAST = ["Petrova", "Sidorov", "Smith", "Ivanova", "Kuznetsov", "Brown", "Popova", "Volkov", "Garcia", "Lee"]
CITIES = ["Springfield", "Riverton", "Lakeside", "Hillview"]
CATEGORIES = ["dairy", "bakery", "produce", "meat", "beverages"]
PHONE_FORMATS = ["+1 {a}-{b}-{c}", "({a}) {b}-{c}", "{a}.{b}.{c}", "+1{a}{b}{c}", " {a} {b} {c} "]


@dataclass(frozen=True)
class CdcRecord:
    topic: str
    key: bytes
    value: bytes | None


def fixtures() -> list[dict[str, Any]]:
    """The documented CDC records of smt/fixtures/extract_new_document_state.json (a customer, a
    purchase, an update, a delete and its tombstone), as parsed JSON."""
    text = resources.files("smt").joinpath("fixtures/extract_new_document_state.json").read_text(encoding="utf-8")
    records: list[dict[str, Any]] = json.loads(text)["records"]
    return records


class Documents:
    """Seeded documents per the data contract (plain random, fast enough for benchmarks)."""

    def __init__(self, seed: int = 0, stores: int = 20, products: int = 100, customers: int = 1000):
        self.rng = random.Random(seed)
        self.n_stores, self.n_products, self.n_customers = stores, products, customers

    def phone(self, i: int) -> str:
        a, b, c = 200 + i % 700, 200 + (i * 7) % 800, f"{(i * 13) % 10000:04d}"
        return PHONE_FORMATS[i % len(PHONE_FORMATS)].format(a=a, b=b, c=c)

    def email(self, i: int) -> str:
        first, last = FIRST[i % len(FIRST)], LAST[(i // len(FIRST)) % len(LAST)]
        text = f"{first}.{last}{i}@example.com"
        return f"  {text} " if i % 4 == 0 else (text.upper() if i % 4 == 1 else text.lower())

    def store(self, i: int) -> dict[str, Any]:
        sid = f"S{i:03d}"
        network = "ProbablyFresh Almost" if i % 2 else "ProbablyFresh Maybe"
        return {"_id": sid, "store_id": sid, "name": f"{network} #{i}", "network": network,
                "city": CITIES[i % len(CITIES)], "address": f"{i} Main St",
                "opening_hours": {"open": "08:00", "close": "22:00"},
                "manager": f"{FIRST[i % len(FIRST)]} {LAST[i % len(LAST)]}", "created_at": BASE_MS - i * 86_400_000}

    def product(self, i: int) -> dict[str, Any]:
        pid = f"P{i:03d}"
        return {"_id": pid, "product_id": pid, "name": f"Product {i}", "category": CATEGORIES[i % len(CATEGORIES)],
                "price": round(0.5 + (i * 37 % 1000) / 100, 2), "unit": "pcs", "manufacturer": f"Maker {i % 9}",
                "shelf_life_days": 3 + i % 30, "nutrition": {"kcal": 100 + i % 300, "protein": 3.1, "fat": 2.5,
                "carbs": 10.0}, "updated_at": BASE_MS + i}

    def customer(self, i: int) -> dict[str, Any]:
        cid = f"C{i:06d}"
        return {"_id": cid, "customer_id": cid, "first_name": FIRST[i % len(FIRST)],
                "last_name": LAST[(i // len(FIRST)) % len(LAST)], "email": self.email(i), "phone": self.phone(i),
                "birth_date": f"{1950 + i % 55}-{1 + i % 12:02d}-{1 + i % 28:02d}",
                "loyalty_status": ["bronze", "silver", "gold", "platinum"][i % 4],
                "home_store_id": f"S{1 + i % self.n_stores:03d}", "registered_at": BASE_MS - i * 1000,
                "updated_at": BASE_MS + i}

    def purchase(self, i: int) -> dict[str, Any]:
        tid = f"T{i:08d}"
        c = 1 + self.rng.randrange(self.n_customers)
        items: list[dict[str, Any]] = []
        for _ in range(1 + self.rng.randrange(4)):
            p = 1 + self.rng.randrange(self.n_products)
            qty, price = 1 + self.rng.randrange(3), round(0.5 + (p * 37 % 1000) / 100, 2)
            items.append({"product_id": f"P{p:03d}", "name": f"Product {p}", "category": CATEGORIES[p % 5],
                          "quantity": qty, "unit_price": price, "line_total": round(qty * price, 2)})
        return {"_id": tid, "purchase_id": tid, "store_id": f"S{1 + i % self.n_stores:03d}",
                "customer_id": f"C{c:06d}", "customer": {"email": self.email(c), "phone": self.phone(c)},
                "items": items, "total": round(sum(float(x["line_total"]) for x in items), 2),
                "payment_method": ["card", "cash", "sbp"][i % 3], "status": "completed",
                "purchased_at": BASE_MS + i * 1000, "updated_at": BASE_MS + i * 1000}


def mixed_records(pipeline: PipelineConfig, n: int, seed: int = 0) -> Iterator[CdcRecord]:
    """`n` records across the four entities: snapshot reads of stores and products first, then
    customers and purchases as inserts, with updates, and deletes (each delete is two records:
    the rewritten delete and its tombstone)."""
    docs = Documents(seed)
    rng = random.Random(seed + 1)
    topic = {name: e.cdc_topic for name, e in pipeline.entities.items()}
    made, ts = 0, BASE_MS
    counters = {"stores": 0, "products": 0, "customers": 0, "purchases": 0}
    while made < n:
        ts += 1
        roll = rng.random()
        name = "stores" if roll < 0.02 else "products" if roll < 0.07 else "customers" if roll < 0.32 else "purchases"
        counters[name] += 1
        i = counters[name]
        doc = getattr(docs, name[:-1])(i)
        op = "r" if name in ("stores", "products") else "c"
        kind = rng.random()
        if kind < 0.1 and i > 1:
            doc = getattr(docs, name[:-1])(rng.randrange(1, i))
            op = "u"
        if kind > 0.97 and i > 1 and made + 2 <= n:
            doc_id = getattr(docs, name[:-1])(rng.randrange(1, i))["_id"]
            yield CdcRecord(topic[name], key(doc_id), delete_value(ts))
            yield CdcRecord(topic[name], key(doc_id), None)
            made += 2
            continue
        yield CdcRecord(topic[name], key(doc["_id"]), value(doc, op, ts))
        made += 1
