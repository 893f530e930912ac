"""The last check before a record leaves the processor: one decision, made here, for both the
Python and the native path (smt/native only ever emits a record this module would pass, and hands
anything it cannot prove clean back to Python; tests/unit/smt/test_smt_guard.py holds both to it).

1. Protected fields: every encrypted leaf holds an envelope, every `_bidx` a blind index, dropped
   fields are gone (`check_envelope`, `check_index`).
2. Everything else: no string and no object key anywhere in the record may look like a plaintext
   email address or phone number (`scan_record`). Strings are read decoded (JSON escapes are gone
   once the record is parsed), NFKC-normalized (full-width `＠`, `１２３` become `@`, `123`), with
   invisible format characters removed. Emails: a Unicode-aware pattern (any script in the local
   part and the domain). Phones: `phonenumbers`' matcher over free text (leniency POSSIBLE, numbers
   read in the pipeline's default region unless written with `+`), a match counting only when its
   length is possible for a full number (not a local-only one) and it is not glued to a letter or
   digit (hex digests, ids), so prices and ids do not trip it.
   Only strings that could hold one are examined (`is_candidate`: an `@`, or enough digits).

A finding names where it is by depth and kind only (`an object key at depth 2`): nothing taken
from the record, key or value, ever reaches a header, log line or error.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import phonenumbers
from phonenumbers import Leniency, PhoneMetadata, PhoneNumberMatcher, ValidationResult

from smt.envelope import is_envelope

BIDX = re.compile(r"[a-z0-9]{1,32}\.[0-9a-f]{64}")  # a blind index: <index key id>.<hex HMAC-SHA256>
# Local part: letters and digits of any script plus RFC 5322 atext punctuation; domain: labels of
# letters, digits and hyphens of any script, at least two, the last starting with a letter.
EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@(?:[\w-]+\.)+[^\W\d_][\w-]*")
_DIGIT = re.compile(r"\d")  # Unicode decimal digits (category Nd), after NFKC
_PLUS = ("+", "\uff0b")  # phonenumbers' plus signs (NFKC folds the other lookalikes to "+")
_NON_DIGITS = bytes(b for b in range(256) if not 0x30 <= b <= 0x39)
MAX_DEPTH = 128  # nesting of objects and arrays; deeper records go to the DLQ (not_json)


@dataclass(frozen=True)
class Finding:
    """Where the guard found something, by kind and position only (never the content)."""

    what: str  # "email" or "phone"
    where: str  # "a value" or "an object key"
    depth: int

    def __str__(self) -> str:
        return f"{self.where} at depth {self.depth} looks like a plaintext {self.what}"


@lru_cache(maxsize=64)
def phone_thresholds(region: str) -> tuple[int, int]:
    """(digits, digits with a plus sign): the fewest digits a string must hold before a full phone
    number fits in it, read in `region` (its national lengths, or an international prefix such as
    810 or 00 before the shortest number of any country) or written with `+` (the shortest number
    of any country with its country code). Derived from phonenumbers' metadata."""
    def lengths(md: Any) -> list[int]:
        return [n for n in md.general_desc.possible_length if n > 0]

    shortest_international = min(
        len(str(md.country_code)) + min(lengths(md))
        for md in (PhoneMetadata.metadata_for_region(r) for r in phonenumbers.SUPPORTED_REGIONS)
        if md is not None and md.general_desc is not None
    )
    md = PhoneMetadata.metadata_for_region(region)
    if md is None or md.general_desc is None:
        return shortest_international, shortest_international
    national = min(lengths(md))
    prefixes = re.findall(r"\d+", md.international_prefix or "")
    idd = min((len(p) for p in prefixes), default=0)
    if md.international_prefix and not prefixes:  # a pattern such as 0(?:0|11): at least 2 digits
        idd = 2
    return min(national, idd + shortest_international if idd else national), shortest_international


def fold(value: str) -> str:
    """The text the detectors read: NFKC, without invisible format characters (category Cf)."""
    if value.isascii():
        return value
    text = unicodedata.normalize("NFKC", value)
    return "".join(c for c in text if unicodedata.category(c) != "Cf")


def is_candidate(text: str, thresholds: tuple[int, int]) -> bool:
    """Could `text` (folded) hold an email or a full phone number? The cheap test before the real
    detectors; the native path's hand-back test (smt/native `suspicious`) is a superset of it."""
    if "@" in text:
        return True
    digits = len(_DIGIT.findall(text))
    return digits >= thresholds[0] or (digits >= thresholds[1] and any(p in text for p in _PLUS))


def looks_like_email(value: str) -> bool:
    return EMAIL.search(fold(value)) is not None


def looks_like_phone(value: str, region: str = "RU") -> bool:
    """A full (not local-only) possible phone number anywhere in the text."""
    text = fold(value)
    for match in PhoneNumberMatcher(text, region, leniency=Leniency.POSSIBLE):
        if phonenumbers.is_possible_number_with_reason(match.number) != ValidationResult.IS_POSSIBLE:
            continue
        # glued to a letter or digit (hex digests, ids such as C0000012345): not a phone number written
        # as one; phonenumbers' own VALID leniency makes the same check
        before, after = text[match.start - 1:match.start], text[match.end:match.end + 1]
        if before.isalnum() or after.isalnum():
            continue
        return True
    return False


def detect(value: str, region: str, thresholds: tuple[int, int]) -> str | None:
    """"email", "phone" or None for one string."""
    if value.isascii():  # the common case, decided without regexes: ASCII text folds to itself
        if "@" not in value:
            if len(value) < min(thresholds):
                return None
            digits = len(value.encode("ascii").translate(None, _NON_DIGITS))
            if digits < min(thresholds) or (digits < thresholds[0] and "+" not in value):
                return None
        text = value
    else:
        text = fold(value)
        if not is_candidate(text, thresholds):
            return None
    if "@" in text and EMAIL.search(text):
        return "email"
    if looks_like_phone(text, region):
        return "phone"
    return None


def scan_record(record: Any, region: str, skip: dict[int, frozenset[str]] | None = None) -> Finding | None:
    """The first email or phone number among the record's strings and object keys, if any.

    `skip` maps id(object) to the names of its members the transform itself wrote (envelopes and
    blind indexes, checked by shape instead). Iterative, so any nesting is safe; deeper than
    MAX_DEPTH raises `DepthError`."""
    return next(findings(record, region, skip), None)


def findings(record: Any, region: str, skip: dict[int, frozenset[str]] | None = None) -> Iterator[Finding]:
    """Every email or phone number among the record's strings and object keys (see scan_record)."""
    thresholds = phone_thresholds(region)
    short = min(thresholds)  # an ASCII string shorter than this, without "@", holds neither

    def suspect(s: str) -> bool:
        return len(s) >= short or "@" in s or not s.isascii()

    stack: list[tuple[Any, int]] = [(record, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise DepthError(f"nesting deeper than {MAX_DEPTH}")
        if node.__class__ is str:
            what = detect(node, region, thresholds)
            if what:
                yield Finding(what, "a value", depth)
        elif node.__class__ is dict:
            written = skip.get(id(node)) if skip else None
            for key, value in node.items():
                if suspect(key):
                    what = detect(key, region, thresholds)
                    if what:
                        yield Finding(what, "an object key", depth + 1)
                if written is not None and key in written:
                    continue
                cls = value.__class__
                if cls is str:
                    if suspect(value):
                        what = detect(value, region, thresholds)
                        if what:
                            yield Finding(what, "a value", depth + 1)
                elif cls is dict or cls is list:
                    stack.append((value, depth + 1))
        elif node.__class__ is list:
            stack.extend((v, depth + 1) for v in node if v.__class__ in (dict, list, str))


class DepthError(ValueError):
    """A record nests deeper than MAX_DEPTH."""


def describe_plaintext(value: Any, region: str = "RU") -> str:
    """Why a value is unacceptable where ciphertext belongs (never includes the value)."""
    if isinstance(value, str):
        if looks_like_email(value):
            return "looks like a plaintext email"
        if looks_like_phone(value, region):
            return "looks like a plaintext phone number"
        return "is not an envelope"
    return f"is a {type(value).__name__}, not an envelope"


def check_envelope(value: Any, nullable: bool) -> str | None:
    if value is None and nullable:
        return None
    return None if is_envelope(value) else describe_plaintext(value)


def is_blind_index(value: Any) -> bool:
    return isinstance(value, str) and BIDX.fullmatch(value) is not None


def check_index(value: Any, nullable: bool) -> str | None:
    if value is None and nullable:
        return None
    return None if is_blind_index(value) else describe_plaintext(value)
