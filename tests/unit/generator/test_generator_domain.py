"""The generated domain, without a server: counts, determinism, references, datetimes, memory."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tracemalloc
from collections import Counter
from datetime import UTC

import pytest

from fresh.settings import REPO_ROOT
from generator.domain import (
    CATEGORIES,
    EPOCH,
    LOYALTY_TIERS,
    NETWORK_ALMOST,
    NETWORK_MAYBE,
    PAYMENT_METHODS,
    PURCHASE_STATUSES,
    Domain,
    GeneratorError,
    Plan,
    id_index,
)
from generator.seed import dumps_jsonl

ENTITIES = ("stores", "products", "customers", "purchases")


@pytest.fixture(scope="module")
def domain() -> Domain:
    return Domain(Plan(seed=42))


def _digest(seed: int, n: int) -> str:
    d = Domain(Plan(seed=seed))
    h = hashlib.sha256()
    for entity in ENTITIES:
        for doc in d.stream(entity, 0, n):
            h.update(dumps_jsonl(doc).encode())
    return h.hexdigest()


def test_default_plan_counts() -> None:
    assert Plan(seed=1).counts == {"stores": 45, "products": 100, "customers": 175, "purchases": 1000}
    assert Plan(seed=1, scale=10).counts == {"stores": 45, "products": 100, "customers": 1750, "purchases": 10000}


@pytest.mark.parametrize("kwargs", [{"scale": 0}, {"seed": -1}])
def test_bad_plan_is_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(GeneratorError):
        Plan(seed=kwargs.get("seed", 1), scale=kwargs.get("scale", 1))


def test_unknown_locale_is_a_clear_error() -> None:
    with pytest.raises(GeneratorError, match="unknown Faker locale"):
        Domain(Plan(seed=1, locale="xx_XX"))


def test_same_seed_gives_byte_identical_documents() -> None:
    assert _digest(7, 60) == _digest(7, 60)
    assert _digest(7, 60) != _digest(8, 60)


def test_documents_do_not_depend_on_the_process() -> None:
    # A fresh interpreter with another hash seed must build the same bytes.
    code = "from tests.unit.generator.test_generator_domain import _digest; print(_digest(7, 60))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "12345", "PATH": ""}, cwd=REPO_ROOT)
    assert out.stdout.strip() == _digest(7, 60)


def test_documents_do_not_depend_on_build_order() -> None:
    forward = [Domain(Plan(seed=3)).purchase(i) for i in range(40)]
    d = Domain(Plan(seed=3))
    backward = [d.purchase(i) for i in reversed(range(40))][::-1]
    # a warmed contact cache must not change anything either
    assert forward == backward == [d.purchase(i) for i in range(40)]


def test_stores_split_into_two_networks(domain: Domain) -> None:
    stores = list(domain.stream("stores"))
    assert Counter(s["network"] for s in stores) == {NETWORK_ALMOST: 30, NETWORK_MAYBE: 15}
    assert [s["store_id"] for s in stores][:2] == ["S001", "S002"]
    for s in stores:
        assert s["_id"] == s["store_id"]
        assert s["city"] and s["address"] and s["manager"]
        assert s["opening_hours"]["open"] < s["opening_hours"]["close"]


def test_products_twenty_per_category(domain: Domain) -> None:
    products = list(domain.stream("products"))
    assert Counter(p["category"] for p in products) == dict.fromkeys(CATEGORIES, 20)
    assert len(CATEGORIES) == 5
    assert len({p["product_id"] for p in products}) == 100
    for p in products:
        assert isinstance(p["price"], float) and p["price"] == round(p["price"], 2) and p["price"] > 0
        assert isinstance(p["shelf_life_days"], int) and p["shelf_life_days"] > 0
        assert set(p["nutrition"]) == {"kcal", "protein", "fat", "carbs"}


def test_customers_cover_every_store(domain: Domain) -> None:
    customers = list(domain.stream("customers"))
    assert len(customers) == 175
    assert {c["home_store_id"] for c in customers} == {s["store_id"] for s in domain.stream("stores")}
    assert {c["loyalty_status"] for c in customers} <= set(LOYALTY_TIERS)
    for c in customers:
        assert "@" in c["email"] and c["phone"]
        assert len(c["birth_date"]) == 10 and c["birth_date"][4] == "-"


def test_purchases_reference_products_at_their_prices(domain: Domain) -> None:
    products = {p["product_id"]: p for p in domain.stream("products")}
    customers = {c["customer_id"]: c for c in domain.stream("customers")}
    stores = {s["store_id"] for s in domain.stream("stores")}
    for p in domain.stream("purchases"):
        assert p["store_id"] in stores
        customer = customers[p["customer_id"]]
        assert p["customer"] == {"email": customer["email"], "phone": customer["phone"]}
        assert 1 <= len(p["items"]) <= 5
        for item in p["items"]:
            product = products[item["product_id"]]
            assert (item["name"], item["category"], item["unit_price"]) == (
                product["name"], product["category"], product["price"])
            assert item["line_total"] == round(item["quantity"] * item["unit_price"], 2)
        assert p["total"] == round(sum(i["line_total"] for i in p["items"]), 2)
        assert p["payment_method"] in PAYMENT_METHODS and p["status"] in PURCHASE_STATUSES
        assert p["updated_at"] >= p["purchased_at"]


def test_datetimes_are_utc_whole_seconds_around_the_epoch(domain: Domain) -> None:
    for entity, fields in {"stores": ["created_at"], "products": ["updated_at"],
                           "customers": ["registered_at", "updated_at"],
                           "purchases": ["purchased_at", "updated_at"]}.items():
        for doc in domain.stream(entity, 0, 50):
            for f in fields:
                value = doc[f]
                assert value.tzinfo == UTC and value.microsecond == 0
                assert abs((value - EPOCH).days) < 3 * 366 + 20


def test_business_key_index_round_trip() -> None:
    assert id_index("C000042") == 41 and id_index("T00000001") == 0


def test_streaming_memory_stays_flat() -> None:
    def peak(n: int) -> int:
        d = Domain(Plan(seed=5))
        tracemalloc.start()
        for _ in d.stream("purchases", 0, n):
            pass
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, large = peak(1_000), peak(10_000)
    # ten times the documents, not ten times the memory
    assert large < small * 2 + 256 * 1024


@pytest.mark.parametrize("locale", ["ru_RU", "en_US"])
def test_phones_parse_in_the_locale_region(locale: str) -> None:
    import phonenumbers

    d = Domain(Plan(seed=42, locale=locale))
    region = locale.split("_")[1]
    for i in range(1000):
        number = phonenumbers.parse(d.customer_contact(i)["phone"], region)
        assert phonenumbers.is_possible_number(number)
