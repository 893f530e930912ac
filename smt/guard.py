"""The last check before a record leaves: no protected field may still hold plaintext, and no
string anywhere in the record may look like an email address. A refusal sends the record to the
DLQ (reason `plaintext_pii`), never to the `_secure` topic."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from smt.envelope import is_envelope

EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
PHONE = re.compile(r"^\s*\+?[\d\s().\-/]{7,}((x|ext\.?|;ext=)\s*\d+)?\s*$", re.IGNORECASE)
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def looks_like_email(value: str) -> bool:
    return EMAIL.search(value) is not None


def looks_like_phone(value: str) -> bool:
    return PHONE.match(value) is not None and sum(c.isdigit() for c in value) >= 7


def describe_plaintext(value: Any) -> str:
    """Why a value is unacceptable where ciphertext belongs (never includes the value)."""
    if isinstance(value, str):
        if looks_like_email(value):
            return "looks like a plaintext email"
        if looks_like_phone(value):
            return "looks like a plaintext phone number"
        return "is not an envelope"
    return f"is a {type(value).__name__}, not an envelope"


def check_envelope(value: Any, nullable: bool) -> str | None:
    if value is None and nullable:
        return None
    return None if is_envelope(value) else describe_plaintext(value)


def check_index(value: Any, nullable: bool) -> str | None:
    if value is None and nullable:
        return None
    return None if isinstance(value, str) and HEX64.match(value) else describe_plaintext(value)


def strings(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for v in node:
            yield from strings(v, f"{path}[]")


def find_email(record: dict[str, Any], encoded: bytes) -> str | None:
    """The path of a string that looks like an email address, if any. `encoded` is the record's
    JSON: without an '@' in it there is nothing to look for (the fast path for nearly every record)."""
    if b"@" not in encoded:
        return None
    for path, value in strings(record):
        if looks_like_email(value):
            return path
    return None
