"""The ProbablyFresh domain: deterministic builders for stores, products, customers and purchases.

Every document is a pure function of `(seed, collection, index)`: its randomness comes from a
Faker instance re-seeded with a hash of those three values, and its datetimes from a fixed epoch
plus seeded offsets. So one document can be rebuilt alone, in any order, in any process, and
comes out identical every time (for a given Faker version, whose data tables shape the text).
Generation therefore streams with flat memory: nothing needs the documents built before it,
except the 100 products, which purchases read for their prices.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

import phonenumbers
from faker import Faker

from fresh.errors import FreshError

Document = dict[str, Any]

# Every datetime is EPOCH plus a seeded offset: never now(), so re-runs are byte-identical.
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
SALES_WINDOW_S = 365 * 24 * 3600  # purchases fall in the year after EPOCH
HISTORY_WINDOW_S = 3 * 365 * 24 * 3600  # stores, customers, products appear in the 3 years before EPOCH

NETWORK_ALMOST = "ProbablyFresh Almost"
NETWORK_MAYBE = "ProbablyFresh Maybe"
STORES_ALMOST = 30
STORES_MAYBE = 15
STORE_COUNT = STORES_ALMOST + STORES_MAYBE
PRODUCTS_PER_CATEGORY = 20
CUSTOMERS_PER_SCALE = 175
PURCHASES_PER_SCALE = 1000
MAX_ITEMS_PER_PURCHASE = 5

LOYALTY_TIERS = ("bronze", "silver", "gold", "platinum")
PAYMENT_METHODS = ("card", "cash", "sbp")
PURCHASE_STATUSES = ("completed", "returned", "cancelled")

# The catalog is the chain's own fixed assortment (Faker locales change people and places only).
# category -> (unit, price range, shelf life range in days, kcal range, 20 product names)
CATALOG: dict[str, tuple[str, tuple[float, float], tuple[int, int], tuple[int, int], tuple[str, ...]]] = {
    "dairy": ("шт", (45.0, 420.0), (5, 60), (40, 380), (
        "Молоко 2,5%", "Молоко 3,2%", "Кефир 1%", "Кефир 3,2%", "Ряженка 4%", "Сметана 15%", "Сметана 20%",
        "Творог 5%", "Творог 9%", "Йогурт питьевой клубничный", "Йогурт греческий", "Масло сливочное 82,5%",
        "Сыр Российский", "Сыр Гауда", "Сыр Моцарелла", "Сырки глазированные", "Простокваша", "Снежок",
        "Сливки 10%", "Варенец")),
    "bakery": ("шт", (35.0, 260.0), (2, 30), (220, 480), (
        "Хлеб Бородинский", "Батон нарезной", "Хлеб пшеничный", "Хлеб ржаной", "Багет французский",
        "Лаваш армянский", "Булочка с маком", "Круассан", "Сушки", "Баранки", "Пряники медовые",
        "Печенье овсяное", "Бублик", "Чиабатта", "Кекс с изюмом", "Рулет с вареньем", "Ватрушка с творогом",
        "Пирожок с капустой", "Хлебцы ржаные", "Сухари ванильные")),
    "produce": ("кг", (39.0, 690.0), (3, 45), (15, 95), (
        "Картофель", "Морковь", "Лук репчатый", "Капуста белокочанная", "Свёкла", "Огурцы", "Помидоры",
        "Перец болгарский", "Кабачки", "Яблоки Гала", "Яблоки Антоновка", "Груши", "Бананы", "Апельсины",
        "Мандарины", "Лимоны", "Виноград", "Чеснок", "Укроп", "Петрушка")),
    "meat_fish": ("кг", (189.0, 1890.0), (2, 180), (90, 420), (
        "Куриное филе", "Куриные бёдра", "Фарш говяжий", "Фарш домашний", "Свинина шея", "Говядина вырезка",
        "Индейка филе", "Колбаса Докторская", "Сосиски молочные", "Ветчина", "Бекон", "Пельмени",
        "Сёмга филе", "Минтай", "Скумбрия холодного копчения", "Сельдь слабосолёная", "Креветки",
        "Треска", "Печень куриная", "Котлеты домашние")),
    "beverages": ("л", (29.0, 980.0), (30, 730), (0, 240), (
        "Вода минеральная", "Вода питьевая", "Сок апельсиновый", "Сок яблочный", "Морс клюквенный",
        "Квас хлебный", "Лимонад Тархун", "Чай чёрный", "Чай зелёный", "Кофе молотый", "Кофе зерновой",
        "Какао", "Компот вишнёвый", "Кисель", "Нектар персиковый", "Холодный чай", "Тоник",
        "Газировка Дюшес", "Сбитень", "Напиток овсяный")),
}
CATEGORIES = tuple(CATALOG)
PRODUCT_COUNT = PRODUCTS_PER_CATEGORY * len(CATEGORIES)


class GeneratorError(FreshError):
    """The generator was asked for something it cannot do (bad scale, seed, locale...)."""


@dataclass(frozen=True)
class Plan:
    """How many documents of each kind one seed run makes."""

    seed: int
    scale: int = 1
    locale: str = "ru_RU"

    def __post_init__(self) -> None:
        if self.scale < 1:
            raise GeneratorError(f"scale must be at least 1, got {self.scale}; use --scale 1 or more")
        if not 0 <= self.seed < 2**63:
            raise GeneratorError(f"seed must be between 0 and 2**63-1, got {self.seed}")

    @property
    def counts(self) -> dict[str, int]:
        """Documents per entity (entity names as in pipeline.yaml), in write order."""
        return {
            "stores": STORE_COUNT,
            "products": PRODUCT_COUNT,
            "customers": CUSTOMERS_PER_SCALE * self.scale,
            "purchases": PURCHASES_PER_SCALE * self.scale,
        }


def derive_seed(seed: int, collection: str, index: int) -> int:
    """A 64-bit seed for one document: stable across processes (unlike hash())."""
    digest = hashlib.blake2b(f"{seed}:{collection}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def store_id(index: int) -> str:
    return f"S{index + 1:03d}"


def product_id(index: int) -> str:
    return f"P{index + 1:03d}"


def customer_id(index: int) -> str:
    return f"C{index + 1:06d}"


def purchase_id(index: int) -> str:
    return f"T{index + 1:08d}"


def id_index(business_key_value: str) -> int:
    """The index a business key was built from: "C000042" -> 41."""
    return int(business_key_value[1:]) - 1


def home_store_index(seed: int, customer_index: int) -> int:
    """The first STORE_COUNT customers cover every store once (each store has a regular); the
    rest are spread by a hash. Cheap, so a purchase can place its customer without Faker."""
    if customer_index < STORE_COUNT:
        return customer_index
    return derive_seed(seed, "customers.home", customer_index) % STORE_COUNT


def _parses(phone: str, region: str) -> bool:
    try:
        return phonenumbers.is_possible_number(phonenumbers.parse(phone, region))
    except phonenumbers.NumberParseException:
        return False


def _at(offset_s: int, base: datetime = EPOCH) -> datetime:
    return base + timedelta(seconds=offset_s)


class Domain:
    """Builds the documents of one plan. Cheap to create; holds two Fakers, the product list and a
    bounded cache of customer contacts (purchases copy them)."""

    def __init__(self, plan: Plan):
        self.plan = plan
        try:
            self.fake = Faker(plan.locale)
            # Contacts get their own instance: re-seeding the shared one inside a builder would
            # reset the builder's random stream halfway through.
            self._contact_fake = Faker(plan.locale)
        except AttributeError:
            raise GeneratorError(
                f"unknown Faker locale {plan.locale!r}; use one Faker supports, e.g. ru_RU or en_US"
            ) from None
        self.region = plan.locale.rpartition("_")[2].upper() or "US"  # where phone numbers must parse
        # Purchases copy the product's name, category and price: 100 small dicts, kept in memory.
        self.products = [self.product(i) for i in range(PRODUCT_COUNT)]
        self._contact = lru_cache(maxsize=65536)(self._customer_contact)

    def _seeded(self, collection: str, index: int) -> Faker:
        self.fake.seed_instance(derive_seed(self.plan.seed, collection, index))
        return self.fake

    # ---- stores --------------------------------------------------------------------------

    def store(self, index: int) -> Document:
        fake = self._seeded("stores", index)
        rng = fake.random
        key = store_id(index)
        opens = rng.choice(("07:00", "08:00", "09:00"))
        closes = rng.choice(("21:00", "22:00", "23:00"))
        return {
            "_id": key,
            "store_id": key,
            "name": f"{NETWORK_ALMOST if index < STORES_ALMOST else NETWORK_MAYBE} №{index + 1}",
            "network": NETWORK_ALMOST if index < STORES_ALMOST else NETWORK_MAYBE,
            "city": fake.city(),
            "address": fake.street_address(),
            "opening_hours": {"open": opens, "close": closes},
            "manager": fake.name(),
            "created_at": _at(-rng.randrange(HISTORY_WINDOW_S)),
        }

    # ---- products ------------------------------------------------------------------------

    def product(self, index: int) -> Document:
        fake = self._seeded("products", index)
        rng = fake.random
        category = CATEGORIES[index // PRODUCTS_PER_CATEGORY]
        unit, (low, high), (life_lo, life_hi), (kcal_lo, kcal_hi), names = CATALOG[category]
        key = product_id(index)
        kcal = rng.randint(kcal_lo, kcal_hi)
        return {
            "_id": key,
            "product_id": key,
            "name": names[index % PRODUCTS_PER_CATEGORY],
            "category": category,
            "price": round(rng.uniform(low, high), 2),
            "unit": unit,
            "manufacturer": fake.company(),
            "shelf_life_days": rng.randint(life_lo, life_hi),
            "nutrition": {
                "kcal": kcal,
                "protein": round(rng.uniform(0, 30), 1),
                "fat": round(rng.uniform(0, 35), 1),
                "carbs": round(rng.uniform(0, 80), 1),
            },
            "updated_at": _at(-rng.randrange(HISTORY_WINDOW_S)),
        }

    # ---- customers -----------------------------------------------------------------------

    def _customer_contact(self, index: int) -> tuple[str, str]:
        # Its own seed stream, so a purchase can copy the contact without building the customer.
        fake = self._contact_fake
        fake.seed_instance(derive_seed(self.plan.seed, "customers.contact", index))
        email = fake.email()
        # Faker's phone formats vary like real input (the PII processor normalizes them), but its
        # digits are random: a few read as no number at all in the locale's region (ru_RU "8 10..."
        # is the international prefix). Draw again, deterministically, until one parses.
        for _ in range(20):
            phone = fake.phone_number()
            if _parses(phone, self.region):
                break
        return email, phone

    def customer_contact(self, index: int) -> dict[str, str]:
        email, phone = self._contact(index)
        return {"email": email, "phone": phone}

    def customer(self, index: int) -> Document:
        email, phone = self._contact(index)
        fake = self._seeded("customers", index)
        rng = fake.random
        key = customer_id(index)
        female = rng.random() < 0.55
        first = fake.first_name_female() if female else fake.first_name_male()
        last = fake.last_name_female() if female else fake.last_name_male()
        home = home_store_index(self.plan.seed, index)
        registered = _at(-rng.randrange(HISTORY_WINDOW_S))
        born = date(1950, 1, 1) + timedelta(days=rng.randrange(55 * 365))
        return {
            "_id": key,
            "customer_id": key,
            "first_name": first,
            "last_name": last,
            "email": email,
            "phone": phone,
            "birth_date": born.isoformat(),
            "loyalty_status": rng.choices(LOYALTY_TIERS, weights=(55, 25, 15, 5))[0],
            "home_store_id": store_id(home),
            "registered_at": registered,
            "updated_at": registered,
        }

    # ---- purchases -----------------------------------------------------------------------

    def purchase(self, index: int, customers: int | None = None) -> Document:
        """Purchase `index`, by one of the first `customers` customers (the plan's by default)."""
        rng = self._seeded("purchases", index).random
        n_customers = customers or self.plan.counts["customers"]
        cust = rng.randrange(n_customers)
        # Most people shop at their home store; the rest wherever.
        store = home_store_index(self.plan.seed, cust) if rng.random() < 0.7 else rng.randrange(STORE_COUNT)
        items = []
        for p in sorted(rng.sample(range(PRODUCT_COUNT), rng.randint(1, MAX_ITEMS_PER_PURCHASE))):
            product = self.products[p]
            quantity = rng.randint(1, 4)
            items.append({
                "product_id": product["product_id"],
                "name": product["name"],
                "category": product["category"],
                "quantity": quantity,
                "unit_price": product["price"],
                "line_total": round(quantity * product["price"], 2),
            })
        status = rng.choices(PURCHASE_STATUSES, weights=(90, 6, 4))[0]
        purchased = _at(rng.randrange(SALES_WINDOW_S))
        updated = purchased if status == "completed" else purchased + timedelta(seconds=rng.randrange(60, 14 * 86400))
        key = purchase_id(index)
        return {
            "_id": key,
            "purchase_id": key,
            "store_id": store_id(store),
            "customer_id": customer_id(cust),
            "customer": self.customer_contact(cust),
            "items": items,
            "total": round(sum(item["line_total"] for item in items), 2),
            "payment_method": rng.choices(PAYMENT_METHODS, weights=(70, 15, 15))[0],
            "status": status,
            "purchased_at": purchased,
            "updated_at": updated,
        }

    # ---- streams -------------------------------------------------------------------------

    def build(self, entity: str, index: int) -> Document:
        builder = {"stores": self.store, "products": self.product,
                   "customers": self.customer, "purchases": self.purchase}.get(entity)
        if builder is None:
            raise GeneratorError(f"the generator knows no entity {entity!r}; it builds {', '.join(self.plan.counts)}")
        return builder(index)

    def stream(self, entity: str, start: int = 0, stop: int | None = None) -> Iterator[Document]:
        """Documents `start`..`stop` (default: the plan's count) of one entity, one at a time."""
        end = self.plan.counts[entity] if stop is None else stop
        for index in range(start, end):
            yield self.build(entity, index)
