"""The envelope format (docs/pii.md), pinned by test vectors and re-derived here by hand from the
spec, so another language can follow the same steps; the native path (smt/native) writes the same
bytes. v2 (`pf2`) is written; v1 (`pf1`) still decrypts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV
from hypothesis import given
from hypothesis import strategies as st

from smt.envelope import BATCH_LIMIT, BlindIndexer, DataKey, EnvelopeError, associated_data, decrypt, is_envelope, parse

SECRET = bytes(range(32))  # test vector key material, never a real key
INDEX_SECRET = bytes(range(32, 64))
KEY = DataKey.from_secret("k1", SECRET)

VECTORS = [
    # (alg, collection, path, record id, salt, nonce, plaintext, expected envelope)
    ("g", "customers", "email", "C000001", bytes(range(16)), bytes(range(12)), b"anna.petrova@example.com",
     "pf2.k1.g.AAECAwQFBgcICQoLDA0ODwABAgMEBQYHCAkKC-FLzpndddQCY6k7Vk4VhJVlAP0QaExMHp0F_Sk4ILJgmhTZGOTPPUo"),
    ("g", "purchases", "customer.phone", "T00000001", b"\xff" * 16, bytes(12), b"+12125550147",
     "pf2.k1.g._____________________wAAAAAAAAAAAAAAAAufsIQETU_Yma2rrlCXDdSUQGSDS3JFNulenVQ"),
    ("s", "customers", "loyalty_status", "", None, None, b"gold", "pf2.k1.s.82Ea9gRSHzcOigDau7s3gCSmZYM"),
]
V1_VECTORS = [  # written before v2; still decrypted
    ("customers", "email", b"anna.petrova@example.com",
     "pf1.k1.g.AAECAwQFBgcICQoLcMBnONsxYZm3K3gIQXOEwWtRSTB8D4GWgcUbUEZNzvz0hva4Zjk6vQ"),
    ("purchases", "customer.phone", b"+12125550147", "pf1.k1.g.AAAAAAAAAAAAAAAAxz5V4t_W5pMF0mz4SVrz-K4WVpW99QdLKKFxkA"),
    ("customers", "loyalty_status", b"gold", "pf1.k1.s.4-YuXOwRG--QO_elEhUDwswaBkU"),
]
BLIND_INDEX_VECTORS = [  # (kind, normalized value, index under key id i1)
    ("email", "anna.petrova@example.com", "i1.56780d5cbd84ff1610a7dd01d9d1983da2b392d6857621031ff2a4456c4b57b7"),
    ("phone", "+12125550147", "i1.0a4348b7ced1f481c46ec781c7de3928b659c2acd5f56feac7177b653ee841f4"),
]


def hkdf_sha256(ikm: bytes, info: bytes, length: int, salt: bytes = b"\x00" * 32) -> bytes:
    """RFC 5869 by hand (no salt = HashLen zero bytes)."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    okm, block, i = b"", b"", 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        okm, i = okm + block, i + 1
    return okm[:length]


@pytest.mark.parametrize(("alg", "collection", "path", "rid", "salt", "nonce", "plaintext", "expected"), VECTORS)
def test_vectors_encrypt_to_the_pinned_string(alg, collection, path, rid, salt, nonce, plaintext, expected) -> None:
    if alg == "g":
        ad = associated_data("k1", "g", collection, path, rid)
        assert KEY.batch(salt).seal(plaintext, ad, nonce) == expected
    else:
        assert KEY.encrypt_deterministic(plaintext, collection, path) == expected
    assert decrypt({"k1": KEY}, expected, collection, path, rid) == plaintext


@pytest.mark.parametrize(("alg", "collection", "path", "rid", "salt", "nonce", "plaintext", "expected"), VECTORS)
def test_vectors_decrypt_by_following_the_spec_by_hand(alg, collection, path, rid, salt, nonce, plaintext,
                                                       expected) -> None:
    scheme, key_id, alg_field, payload = expected.split(".")
    assert (scheme, key_id, alg_field) == ("pf2", "k1", alg)
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    if alg == "g":
        ad = f"pf2.{key_id}.g|{collection}|{path}|{rid}".encode()
        subkey = hkdf_sha256(SECRET, b"pf2 aes-256-gcm", 32)
        batch_key = hkdf_sha256(subkey, b"pf2 aes-256-gcm batch", 32, salt=raw[:16])
        assert raw[:16] == salt and raw[16:28] == nonce
        assert AESGCM(batch_key).decrypt(raw[16:28], raw[28:], ad) == plaintext
    else:
        ad = f"pf2.{key_id}.s|{collection}|{path}".encode()
        assert AESSIV(hkdf_sha256(SECRET, b"pf2 aes-256-siv", 64)).decrypt(raw, [ad]) == plaintext


@pytest.mark.skipif(os.environ.get("FRESH_SKIP_NATIVE") == "1", reason="smt/native not built")
@pytest.mark.parametrize(("alg", "collection", "path", "rid", "salt", "nonce", "plaintext", "expected"),
                         [v for v in VECTORS if v[0] == "g"])
def test_native_writes_the_vectors_byte_for_byte(alg, collection, path, rid, salt, nonce, plaintext, expected) -> None:
    import smt_native

    batch = KEY.batch(salt)
    ad = associated_data("k1", "g", collection, path, rid)
    assert smt_native.gcm_envelope("pf2.k1.g.", salt, batch.secret, nonce, ad, plaintext.decode()) == expected


@pytest.mark.parametrize(("collection", "path", "plaintext", "envelope"), V1_VECTORS)
def test_v1_envelopes_still_decrypt(collection: str, path: str, plaintext: bytes, envelope: str) -> None:
    assert decrypt({"k1": KEY}, envelope, collection, path) == plaintext
    with pytest.raises(EnvelopeError, match="does not authenticate"):
        decrypt({"k1": KEY}, envelope, collection, path + "x")


@pytest.mark.parametrize(("kind", "value", "expected"), BLIND_INDEX_VECTORS)
def test_blind_index_vector_and_by_hand(kind: str, value: str, expected: str) -> None:
    assert BlindIndexer(INDEX_SECRET, "i1").index(value, kind) == expected
    key = hkdf_sha256(INDEX_SECRET, b"pf2 hmac-sha256 blind index " + kind.encode(), 32)
    assert "i1." + hmac.new(key, value.encode(), hashlib.sha256).hexdigest() == expected


def test_blind_indexes_of_one_text_differ_per_kind_and_per_key() -> None:
    a = BlindIndexer(INDEX_SECRET, "i1")
    assert len({a.index("12125550147", k) for k in BlindIndexer.KINDS}) == 3
    assert BlindIndexer(bytes(32), "i2").index("x", "email")[3:] != a.index("x", "email")[3:]


def test_randomized_differs_each_time_deterministic_does_not() -> None:
    a, b = (KEY.encrypt(b"x@y.io", "customers", "email", "C1") for _ in range(2))
    assert a != b and is_envelope(a) and a.isascii()
    assert parse(a)[3][:16] != parse(b)[3][:16]  # a fresh salt: another batch key
    assert KEY.encrypt_deterministic(b"x", "c", "f") == KEY.encrypt_deterministic(b"x", "c", "f")
    assert KEY.encrypt_deterministic(b"x", "c", "f") != KEY.encrypt_deterministic(b"x", "c", "g")


@pytest.mark.parametrize(("collection", "path", "rid"), [("customers", "phone", "C1"), ("stores", "email", "C1"),
                                                         ("customers", "", "C1"), ("customers", "email", "C2"),
                                                         ("customers", "email", "")])
def test_associated_data_binds_collection_field_and_record(collection: str, path: str, rid: str) -> None:
    env = KEY.encrypt(b"anna@example.com", "customers", "email", "C1")
    assert decrypt({"k1": KEY}, env, "customers", "email", "C1") == b"anna@example.com"
    with pytest.raises(EnvelopeError, match="does not authenticate"):  # Bob's envelope does not open in Alice's row
        decrypt({"k1": KEY}, env, collection, path, rid)


def test_tampering_and_key_swap_fail() -> None:
    env = KEY.encrypt(b"anna@example.com", "customers", "email")
    head, payload = env.rsplit(".", 1)
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    with pytest.raises(EnvelopeError):
        decrypt({"k1": KEY}, f"{head}.{flipped}", "customers", "email")
    other = DataKey.from_secret("k2", bytes(32))
    with pytest.raises(EnvelopeError, match="does not authenticate"):  # key id is bound by the AD too
        decrypt({"k1": other}, env, "customers", "email")
    with pytest.raises(EnvelopeError, match="does not hold"):
        decrypt({"k2": other}, env, "customers", "email")


GOOD = VECTORS[0][-1]


@pytest.mark.parametrize("value", ["", "anna@example.com", "pf2.K1.g.abc", "pf3.k1.g.abc", "pf2.k1.x.abc",
                                   "pf2.k1.g.ab=c", "pf2.k1.g.", GOOD + "\n", " " + GOOD, GOOD + "="])
def test_not_an_envelope(value: str) -> None:
    assert not is_envelope(value)
    with pytest.raises(EnvelopeError, match="not an envelope"):
        parse(value)


def test_parsing_is_strict_one_string_one_payload() -> None:
    last = GOOD[-1]
    # base64url of 68 bytes ends in a 3-character group whose last 2 bits are unused: any other
    # character there decodes to the same bytes, and must be refused
    for alt in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_":
        if alt == last:
            continue
        variant = GOOD[:-1] + alt
        try:
            same = decrypt({"k1": KEY}, variant, "customers", "email", "C000001")
        except EnvelopeError:
            continue
        pytest.fail(f"a non-canonical spelling decrypted to {same!r}")
    with pytest.raises(EnvelopeError, match="too short"):
        parse("pf2.k1.g." + "A" * 40)  # 30 bytes: less than salt + nonce + tag


@given(st.binary(max_size=200), st.text(max_size=20))
def test_round_trip_gives_the_plaintext_back(plaintext: bytes, rid: str) -> None:
    env = KEY.encrypt(plaintext, "customers", "notes", rid)
    assert parse(env)[0] == "2"
    assert decrypt({"k1": KEY}, env, "customers", "notes", rid) == plaintext


def test_bad_key_material_is_refused() -> None:
    with pytest.raises(EnvelopeError, match="32 bytes"):
        DataKey.from_secret("k1", b"short")
    with pytest.raises(EnvelopeError, match="lowercase"):
        DataKey.from_secret("K-1", SECRET)


def test_a_batch_key_is_spent_after_its_limit() -> None:
    batch = KEY.batch()
    batch.uses = BATCH_LIMIT - 1
    assert not batch.spent
    batch.seal(b"x", b"ad")
    assert batch.spent and BATCH_LIMIT <= 2**20 < 2**32


def test_blind_index_cache_hits_equal_fresh_digests(monkeypatch) -> None:
    kind, value, expected = BLIND_INDEX_VECTORS[0]
    indexer = BlindIndexer(INDEX_SECRET, "i1")
    assert indexer.cached(kind)(value) is None
    assert indexer.index(value, kind) == expected and indexer.cached(kind)(value) == expected
    monkeypatch.setattr(BlindIndexer, "CACHE_LIMIT", 3)
    fresh = BlindIndexer(INDEX_SECRET, "i1")
    for i in range(10):  # clears when full; `cached` must keep seeing the live cache
        assert fresh.index(f"v{i}", kind) == indexer.index(f"v{i}", kind) == fresh.cached(kind)(f"v{i}")


def test_forked_child_never_reuses_the_parents_pending_nonces() -> None:
    from smt import envelope

    envelope._NONCES.take()  # the pool now holds 1023 nonces
    assert envelope._NONCES.pool
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child process
        os.write(write_end, b"empty" if not envelope._NONCES.pool else b"kept!")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read_end, 5) == b"empty"
    assert envelope._NONCES.pool  # the parent keeps its own
