"""DLQ entries: one Kafka record per source record the processor could not write to `_secure`.

The value is the source value encrypted whole (envelope AD: collection "dlq", field path = the
source topic). When that envelope would not fit in one DLQ record (the topic's and producer's
size limit), the entry keeps the longest prefix whose envelope fits, and its headers still
identify the record: source coordinates, size, and a keyed digest of the whole value (HMAC, never
a plain hash, so a digest cannot be tested against guessed plaintexts without the keyring).
docs/pii.md ("DLQ") states the decision and its limits.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from smt.envelope import derive
from smt.keyring import Keyring

DLQ_COLLECTION = "dlq"  # envelope AD of a DLQ payload: collection "dlq", field path = the source topic
INFO_DLQ_DIGEST = b"pf1 dlq digest hmac-sha256"
RECORD_OVERHEAD_BYTES = 1024  # record batch and record framing, with room to spare
DETAIL_MAX_CHARS = 500
PAYLOAD_WHOLE, PAYLOAD_PREFIX, PAYLOAD_NONE = "whole", "prefix", "none"

_digest_keys: dict[bytes, bytes] = {}


def digest_key(keyring: Keyring) -> bytes:
    """The DLQ digest key: HKDF of the active index key's secret under its own info, so digests of
    the same value stay equal across data-key rotations (`dlq_digest` names the index key)."""
    index_key = keyring.index_keys[keyring.active_index]
    key = _digest_keys.get(index_key)
    if key is None:
        key = _digest_keys[index_key] = derive(index_key, INFO_DLQ_DIGEST, 32)
    return key


def dlq_digest(keyring: Keyring, value: bytes) -> str:
    """`hmac-sha256:<index key id>:<hex>` of the whole source value under the DLQ digest key."""
    return f"hmac-sha256:{keyring.active_index}:" + hmac.digest(digest_key(keyring), value, hashlib.sha256).hex()


def _seal_within(keyring: Keyring, value: bytes, topic: str, budget: int) -> tuple[int, bytes]:
    """Encrypt the longest prefix of `value` whose envelope is at most `budget` bytes: (bytes kept,
    envelope). Measured, not computed from the format: base64 grows 4/3, so the first guess from the
    envelope of nothing is at most a few bytes off and one or two shrinks settle it."""
    seal = keyring.active.encrypt
    overhead = len(seal(b"", DLQ_COLLECTION, topic))
    n = min(len(value), max(0, (budget - overhead) * 3 // 4))
    while True:
        out = seal(value[:n], DLQ_COLLECTION, topic).encode()
        if len(out) <= budget:
            return n, out
        if n == 0:
            return 0, b""
        n = max(0, n - max(1, (len(out) - budget) * 3 // 4 + 3))


@dataclass(frozen=True)
class DlqEntry:
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    payload: str  # PAYLOAD_WHOLE, PAYLOAD_PREFIX or PAYLOAD_NONE


@dataclass(frozen=True)
class Source:
    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


def dlq_entry(keyring: Keyring, src: Source, reason: str, detail: str, instance: str, max_bytes: int,
              payload: bool = True) -> DlqEntry:
    """The DLQ record of `src`, at most `max_bytes` (value + key + headers + framing). `payload=False`
    leaves the value empty (the fallback when a DLQ record with a payload was refused)."""
    value = src.value or b""
    headers = [
        ("dlq.reason", reason.encode()),
        ("dlq.detail", detail[:DETAIL_MAX_CHARS].encode("utf-8", "replace")),
        ("dlq.source.topic", src.topic.encode()),
        ("dlq.source.partition", str(src.partition).encode()),
        ("dlq.source.offset", str(src.offset).encode()),
        ("dlq.source.timestamp", str(src.timestamp).encode()),
        ("dlq.source.bytes", str(len(value)).encode()),
        ("dlq.digest", dlq_digest(keyring, value).encode()),
        ("dlq.instance", instance.encode()),
    ]
    key = src.key
    fixed = RECORD_OVERHEAD_BYTES + sum(len(k) + len(v) + 64 for k, v in headers) + 2 * 64
    if key is not None and fixed + len(key) > max_bytes:
        key = None  # a key that alone overflows the record: the headers still name the source
        headers.append(("dlq.key.dropped", b"1"))
    budget = max_bytes - fixed - (len(key) if key else 0)
    kept, out = _seal_within(keyring, value, src.topic, budget) if payload else (0, b"")
    kind = PAYLOAD_NONE if not out else PAYLOAD_WHOLE if kept == len(value) else PAYLOAD_PREFIX
    headers += [("dlq.payload", kind.encode()), ("dlq.payload.bytes", str(kept).encode())]
    return DlqEntry(key, out, headers, kind)
