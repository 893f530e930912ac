"""DLQ entries: whole, prefix or no payload, always within the record limit, always identifying the
source record by coordinates, size and a keyed digest."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smt.dlq import DLQ_COLLECTION, PAYLOAD_NONE, PAYLOAD_PREFIX, PAYLOAD_WHOLE, Source, dlq_digest, dlq_entry
from smt.envelope import decrypt
from smt.keyring import Keyring, KeyringSource
from smt.processor import PRODUCER_MAX_BYTES, starts_of

TOPIC = "cdc.probablyfresh.customers"


def size(entry) -> int:  # what the broker counts, without the record batch framing
    return len(entry.value) + len(entry.key or b"") + sum(len(k) + len(v) for k, v in entry.headers)


def source(value: bytes | None, key: bytes | None = b'{"id":"C1"}') -> Source:
    return Source(TOPIC, 2, 41, 1_700_000_000_000, key, value)


def test_small_record_is_encrypted_whole_with_identifying_headers(ring: Keyring) -> None:
    value = b'{"email": "anna@example.com"}'
    entry = dlq_entry(ring, source(value), "not_json", "line 1", "pii-0", PRODUCER_MAX_BYTES)
    h = dict(entry.headers)
    assert entry.payload == PAYLOAD_WHOLE and h["dlq.payload"] == b"whole"
    assert decrypt(ring.keys, entry.value.decode(), DLQ_COLLECTION, TOPIC) == value
    assert (h["dlq.source.topic"], h["dlq.source.partition"], h["dlq.source.offset"]) == (TOPIC.encode(), b"2", b"41")
    assert h["dlq.source.bytes"] == str(len(value)).encode() and h["dlq.payload.bytes"] == h["dlq.source.bytes"]
    assert entry.key == b'{"id":"C1"}'
    assert b"anna" not in b"".join(v for _, v in entry.headers)


def test_the_850_kb_record_keeps_the_longest_prefix_that_fits(ring: Keyring) -> None:
    value = b'{"_id": "C1", "note": "' + b"x" * 850_000 + b'"}'
    entry = dlq_entry(ring, source(value), "oversize", "too big", "pii-0", PRODUCER_MAX_BYTES)
    h = dict(entry.headers)
    assert entry.payload == PAYLOAD_PREFIX and h["dlq.payload"] == b"prefix"
    kept = int(h["dlq.payload.bytes"])
    assert decrypt(ring.keys, entry.value.decode(), DLQ_COLLECTION, TOPIC) == value[:kept]
    assert size(entry) <= PRODUCER_MAX_BYTES
    assert kept > 0.74 * PRODUCER_MAX_BYTES - 4096  # base64 is 4/3: nearly all of the room is used
    assert h["dlq.source.bytes"] == str(len(value)).encode()
    assert h["dlq.digest"] == dlq_digest(ring, value).encode()


def test_the_digest_is_keyed_not_a_plain_hash_and_survives_rotation(keyring_source: KeyringSource) -> None:
    value = b'{"email": "anna@example.com"}'
    ring = keyring_source.current()
    digest = dlq_digest(ring, value)
    prefix = f"hmac-sha256:{ring.active_index}:"
    assert digest.startswith(prefix)
    assert digest.removeprefix(prefix) != hashlib.sha256(value).hexdigest()
    assert digest.removeprefix(prefix) != hmac.digest(ring.index_keys[ring.active_index], value, "sha256").hex()
    keyring_source.rotate()
    assert dlq_digest(KeyringSource(keyring_source.path).current(), value) == digest  # the index key stays


def test_without_payload_the_headers_still_identify_the_record(ring: Keyring) -> None:
    entry = dlq_entry(ring, source(b"abc"), "produce_failed", "refused", "pii-0", PRODUCER_MAX_BYTES, payload=False)
    h = dict(entry.headers)
    assert entry.payload == PAYLOAD_NONE and entry.value == b"" and h["dlq.payload.bytes"] == b"0"
    assert h["dlq.digest"] == dlq_digest(ring, b"abc").encode() and h["dlq.source.bytes"] == b"3"


def test_a_key_that_overflows_the_record_is_dropped(ring: Keyring) -> None:
    entry = dlq_entry(ring, source(b"{}", key=b"k" * 999_000), "oversize", "", "pii-0", PRODUCER_MAX_BYTES)
    assert entry.key is None and dict(entry.headers)["dlq.key.dropped"] == b"1"
    assert size(entry) <= PRODUCER_MAX_BYTES


def test_empty_and_null_values_are_encrypted_whole(ring: Keyring) -> None:
    for value in (b"", None):
        entry = dlq_entry(ring, source(value), "not_json", "", "pii-0", PRODUCER_MAX_BYTES)
        assert entry.payload == PAYLOAD_WHOLE
        assert decrypt(ring.keys, entry.value.decode(), DLQ_COLLECTION, TOPIC) == b""


# `ring` is read-only, so sharing it across examples is safe.
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(length=st.integers(0, 300_000), limit=st.integers(2_000, 400_000), detail=st.text(max_size=2_000))
def test_any_record_fits_its_limit_and_its_payload_decrypts(ring: Keyring, length: int, limit: int,
                                                            detail: str) -> None:
    value = (bytes(range(251)) * (length // 251 + 1))[:length]
    entry = dlq_entry(ring, source(value), "oversize", detail, "pii-0", limit)
    assert size(entry) <= limit
    kept = int(dict(entry.headers)["dlq.payload.bytes"])
    if entry.payload != PAYLOAD_NONE:
        assert decrypt(ring.keys, entry.value.decode(), DLQ_COLLECTION, TOPIC) == value[:kept]
    assert (entry.payload == PAYLOAD_WHOLE) == (kept == length and entry.value != b"")


def test_start_count_metadata() -> None:
    assert starts_of(None) == 0 and starts_of("") == 0 and starts_of("other") == 0
    assert starts_of("pf.starts=3") == 3 and starts_of("pf.starts=x") == 0
