"""Normalization before blind indexing and encryption: equal contacts give equal indexes, and what
is not a contact is refused (the record goes to the DLQ as `not_normalizable`).

email: NFKC, invisible format characters (category Cf: zero-width space, soft hyphen...) removed,
surrounding whitespace trimmed; exactly one `@`; the local part case-folded (`str.casefold`) and
free of whitespace and control characters; the domain IDNA-encoded (UTS 46 mapping, IDNA 2008,
the `idna` package), so `Anna@Пример.РФ` and `anna@xn--e1afmkfd.xn--p1ai` are one address.

phone: parsed by `phonenumbers` (numbers without +<country> read in the default region), refused
unless it is a possible full number for its region (not a local-only one: `12` or `0000000` are not
phone numbers) and unless every digit of it was written as a digit (letters read as keypad digits,
`8-800-FLOWERS`, are refused); formatted as E.164, an extension kept as ";ext=<digits>".
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

import idna
import phonenumbers
from phonenumbers import ValidationResult

from fresh.errors import FreshError


class NormalizeError(FreshError):
    """A value cannot be normalized (text that is not an email address or a phone number)."""


def _visible(value: str) -> str:
    text = unicodedata.normalize("NFKC", value)
    return "".join(c for c in text if unicodedata.category(c) != "Cf")


@lru_cache(maxsize=65536)  # contacts repeat across purchases
def normalize_email(value: str) -> str:
    text = (value if value.isascii() else _visible(value)).strip()
    local, at, domain = text.partition("@")
    if not at or "@" in domain:
        raise NormalizeError("not an email address (expected exactly one @)")
    if not local or any(c.isspace() or unicodedata.category(c) == "Cc" for c in local):
        raise NormalizeError("not an email address (empty local part, or whitespace or control characters in it)")
    try:
        ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        raise NormalizeError("not an email address (the domain is not a valid IDNA name)") from None
    return f"{local.casefold()}@{ascii_domain}"


@lru_cache(maxsize=65536)  # phonenumbers.parse costs ~20 µs; contacts repeat across purchases
def normalize_phone(value: str, default_region: str) -> str:
    try:
        number = phonenumbers.parse(value, default_region)
    except phonenumbers.NumberParseException as exc:
        raise NormalizeError(f"not a phone number ({exc.error_type!r})") from None
    if phonenumbers.is_possible_number_with_reason(number) != ValidationResult.IS_POSSIBLE:
        raise NormalizeError("not a phone number (its length is not possible for a full number of its region)")
    written = phonenumbers.normalize_digits_only(value)
    if phonenumbers.national_significant_number(number) not in written or (
            number.extension and number.extension not in written):
        raise NormalizeError("not a phone number (letters read as keypad digits)")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return f"{e164};ext={number.extension}" if number.extension else e164


def normalize(kind: str, value: str, default_region: str) -> str:
    if kind == "email":
        return normalize_email(value)
    if kind == "phone":
        return normalize_phone(value, default_region)
    return value
