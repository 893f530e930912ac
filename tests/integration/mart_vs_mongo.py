"""MART against MongoDB, value for value, for the end-to-end tests.

Per entity, every current MongoDB document against its MART row (every MART column, money as
Decimal, times in epoch ms, blind indexes recomputed with the test's keyring) and against the
newest RAW row of its key, whose payload is decrypted with the keyring (smt.transform's
`decrypt_record`): every document field, PII included (emails and phones normalized as the
processor does), must come back. Returns a list of differences (empty when equal), so a caller
can poll it with a deadline (`wait_equal`) and the timeout message names what differs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from clickhouse.backend import Backend
from fresh.pipeline import PipelineConfig
from fresh.wait import wait_until
from smt.keyring import Keyring
from smt.normalize import normalize_email, normalize_phone
from smt.transform import decrypt_record

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_SHOWN = 5


def _ms(value: datetime) -> int:
    return (value.replace(tzinfo=value.tzinfo or UTC) - _EPOCH) // timedelta(milliseconds=1)


def _dec(value: Any) -> Decimal:
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))


def _mart_sql(entity: str, key: str, mart: str) -> str:
    """Every MART column of `entity`, with Decimal and DateTime64 as exact text / epoch ms."""
    cols = {
        "stores": "name, network, city, address, opens_at, closes_at, "
                  "toUnixTimestamp64Milli(created_at) AS created_at",
        "products": "name, category, toString(price) AS price, unit, manufacturer, shelf_life_days, "
                    "kcal, protein, fat, carbs, toUnixTimestamp64Milli(updated_at) AS updated_at",
        "customers": "loyalty_status, home_store_id, email_bidx, phone_bidx, "
                     "toUnixTimestamp64Milli(registered_at) AS registered_at, "
                     "toUnixTimestamp64Milli(updated_at) AS updated_at",
        "purchases": "store_id, customer_id, customer_email_bidx, customer_phone_bidx, payment_method, status, "
                     "toString(total) AS total, item_product_id, item_name, item_category, item_quantity, "
                     "arrayMap(x -> toString(x), item_unit_price) AS item_unit_price, "
                     "arrayMap(x -> toString(x), item_line_total) AS item_line_total, "
                     "toUnixTimestamp64Milli(purchased_at) AS purchased_at, "
                     "toUnixTimestamp64Milli(updated_at) AS updated_at",
    }[entity]
    return f"SELECT {key} AS id, {cols} FROM {mart}.{entity} FINAL WHERE NOT is_deleted"


def expected_mart_row(entity: str, doc: dict[str, Any], keyring: Keyring, region: str) -> dict[str, Any]:
    """What MART must hold for the MongoDB document `doc` (money as Decimal, times as epoch ms)."""
    bidx = keyring.blind_index.index
    if entity == "stores":
        return {"name": doc["name"], "network": doc["network"], "city": doc["city"], "address": doc["address"],
                "opens_at": doc["opening_hours"]["open"], "closes_at": doc["opening_hours"]["close"],
                "created_at": _ms(doc["created_at"])}
    if entity == "products":
        n = doc["nutrition"]
        return {"name": doc["name"], "category": doc["category"], "price": _dec(doc["price"]), "unit": doc["unit"],
                "manufacturer": doc["manufacturer"], "shelf_life_days": doc["shelf_life_days"],
                "kcal": float(n["kcal"]), "protein": float(n["protein"]), "fat": float(n["fat"]),
                "carbs": float(n["carbs"]), "updated_at": _ms(doc["updated_at"])}
    if entity == "customers":
        return {"loyalty_status": doc["loyalty_status"], "home_store_id": doc["home_store_id"],
                "email_bidx": bidx(normalize_email(doc["email"]), "email"),
                "phone_bidx": bidx(normalize_phone(doc["phone"], region), "phone"),
                "registered_at": _ms(doc["registered_at"]), "updated_at": _ms(doc["updated_at"])}
    items = doc["items"]
    return {"store_id": doc["store_id"], "customer_id": doc["customer_id"],
            "customer_email_bidx": bidx(normalize_email(doc["customer"]["email"]), "email"),
            "customer_phone_bidx": bidx(normalize_phone(doc["customer"]["phone"], region), "phone"),
            "payment_method": doc["payment_method"], "status": doc["status"], "total": _dec(doc["total"]),
            "item_product_id": [i["product_id"] for i in items], "item_name": [i["name"] for i in items],
            "item_category": [i["category"] for i in items], "item_quantity": [i["quantity"] for i in items],
            "item_unit_price": [_dec(i["unit_price"]) for i in items],
            "item_line_total": [_dec(i["line_total"]) for i in items],
            "purchased_at": _ms(doc["purchased_at"]), "updated_at": _ms(doc["updated_at"])}


def _mart_row(entity: str, row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k != "id"}
    for k in ("price", "total"):
        if k in out:
            out[k] = Decimal(out[k])
    for k in ("item_unit_price", "item_line_total"):
        if k in out:
            out[k] = [Decimal(x) for x in out[k]]
    for k in ("kcal", "protein", "fat", "carbs"):
        if k in out:
            out[k] = float(out[k])
    for k in ("created_at", "updated_at", "registered_at", "purchased_at", "shelf_life_days"):
        if k in out:
            out[k] = int(out[k])  # 64-bit integers come quoted in JSON output
    if "item_quantity" in out:
        out["item_quantity"] = [int(x) for x in out["item_quantity"]]
    return out


def _plain(value: Any) -> Any:
    """A MongoDB value as the processor's JSON carries it: datetimes as epoch ms."""
    if isinstance(value, datetime):
        return _ms(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def expected_payload(entity: str, doc: dict[str, Any], region: str) -> dict[str, Any]:
    """The document as the decrypted `_secure` payload must hold it (PII normalized)."""
    out = _plain(doc)
    if entity == "customers":
        out["email"] = normalize_email(doc["email"])
        out["phone"] = normalize_phone(doc["phone"], region)
    if entity == "purchases":
        out["customer"] = {"email": normalize_email(doc["customer"]["email"]),
                           "phone": normalize_phone(doc["customer"]["phone"], region)}
    return out


def differences(cfg: PipelineConfig, backend: Backend, db: Any, keyring: Keyring) -> list[str]:
    """Every difference between MongoDB (`db`) and MART / decrypted RAW; [] when equal."""
    region = cfg.pii_processor.default_region
    raw_db, mart_db = cfg.clickhouse.raw_database, cfg.clickhouse.mart_database
    found: list[str] = []
    for entity in cfg.entities.values():
        docs = {d["_id"]: d for d in db[entity.collection].find({})}
        mart = {r["id"]: _mart_row(entity.name, r)
                for r in backend.query(_mart_sql(entity.name, entity.business_key, mart_db))}
        if set(docs) != set(mart):
            found.append(f"{entity.name}: MART lacks {sorted(set(docs) - set(mart))[:_MAX_SHOWN]}, "
                         f"has extra {sorted(set(mart) - set(docs))[:_MAX_SHOWN]}")
            continue
        raw = {r["id"]: json.loads(r["payload"]) for r in backend.query(
            f"SELECT {entity.business_key} AS id, payload FROM {raw_db}.{entity.name} WHERE NOT deleted "
            f"ORDER BY _offset DESC LIMIT 1 BY {entity.business_key}")}  # newest: as MART (migration 010)
        bad = []
        for key, doc in docs.items():
            want = expected_mart_row(entity.name, doc, keyring, region)
            if mart[key] != want:
                diff = {k: (mart[key].get(k), v) for k, v in want.items() if mart[key].get(k) != v}
                bad.append(f"{key} MART (got, want) {diff}")
                continue
            payload = decrypt_record(raw[key], entity, keyring)
            got = {k: v for k, v in payload.items() if not k.startswith("__") and not k.endswith("_bidx")}
            if isinstance(got.get("customer"), dict):
                got["customer"] = {k: v for k, v in got["customer"].items() if not k.endswith("_bidx")}
            want_payload = expected_payload(entity.name, doc, region)
            if got != want_payload:
                diff = {k: (got.get(k), v) for k, v in want_payload.items() if got.get(k) != v}
                extra = sorted(set(got) - set(want_payload))
                bad.append(f"{key} RAW decrypted (got, want) {diff} extra {extra}")
        if bad:
            found.append(f"{entity.name}: {len(bad)} of {len(docs)} differ, e.g. {bad[:_MAX_SHOWN]}")
    return found


def wait_equal(find: Callable[[], list[str]], timeout_s: float, what: str, interval_s: float = 0.2,
               max_interval_s: float = 2.0) -> float:
    """Poll `find` (a `differences` call) until it finds nothing; the seconds it took. On timeout
    the error names the differences found last."""
    t0 = time.monotonic()

    def equal() -> bool:
        found = find()
        if found:  # raised, not returned: the timeout message then names the differences
            raise AssertionError("; ".join(found))
        return True

    wait_until(equal, timeout_s=timeout_s, what=f"MART = MongoDB, every field ({what})", interval_s=interval_s,
               max_interval_s=max_interval_s)
    return time.monotonic() - t0
