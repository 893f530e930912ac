"""Normalization before blind indexing and encryption, so equal contacts give equal indexes.

email: surrounding whitespace trimmed, lowercased.
phone: parsed by `phonenumbers` (numbers without +<country> read in the default region) and
formatted as E.164; an extension is kept as ";ext=<digits>" (RFC 3966 style).
"""

from __future__ import annotations

from functools import lru_cache

import phonenumbers

from fresh.errors import FreshError


class NormalizeError(FreshError):
    """A value cannot be normalized (for example, text that is not a phone number)."""


def normalize_email(value: str) -> str:
    return value.strip().lower()


@lru_cache(maxsize=65536)  # phonenumbers.parse costs ~20 µs; contacts repeat across purchases
def normalize_phone(value: str, default_region: str) -> str:
    try:
        number = phonenumbers.parse(value, default_region)
    except phonenumbers.NumberParseException as exc:
        raise NormalizeError(f"not a phone number ({exc.error_type!r})") from None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return f"{e164};ext={number.extension}" if number.extension else e164


def normalize(kind: str, value: str, default_region: str) -> str:
    if kind == "email":
        return normalize_email(value)
    if kind == "phone":
        return normalize_phone(value, default_region)
    return value
