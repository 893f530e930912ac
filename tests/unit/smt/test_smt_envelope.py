"""The envelope format (docs/pii.md), pinned by test vectors and re-derived here by hand from the
spec, so another language can follow the same steps."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV

from smt.envelope import BlindIndexer, DataKey, EnvelopeError, decrypt, is_envelope, parse

SECRET = bytes(range(32))  # test vector key material, never a real key
INDEX_SECRET = bytes(range(32, 64))
KEY = DataKey.from_secret("k1", SECRET)

VECTORS = [
    # (alg, collection, path, nonce, plaintext, expected envelope)
    ("g", "customers", "email", bytes(range(12)), b"anna.petrova@example.com",
     "pf1.k1.g.AAECAwQFBgcICQoLcMBnONsxYZm3K3gIQXOEwWtRSTB8D4GWgcUbUEZNzvz0hva4Zjk6vQ"),
    ("g", "purchases", "customer.phone", bytes(12), b"+12125550147",
     "pf1.k1.g.AAAAAAAAAAAAAAAAxz5V4t_W5pMF0mz4SVrz-K4WVpW99QdLKKFxkA"),
    ("s", "customers", "loyalty_status", None, b"gold", "pf1.k1.s.4-YuXOwRG--QO_elEhUDwswaBkU"),
]
BLIND_INDEX_VECTOR = ("anna.petrova@example.com", "de83984e174427527df07648f149ce7438d9c673210e87ed484d134d75f1117b")


def hkdf_sha256(ikm: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 by hand, no salt (= HashLen zero bytes)."""
    prk = hmac.new(b"\x00" * 32, ikm, hashlib.sha256).digest()
    okm, block, i = b"", b"", 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        okm, i = okm + block, i + 1
    return okm[:length]


@pytest.mark.parametrize(("alg", "collection", "path", "nonce", "plaintext", "expected"), VECTORS)
def test_vectors_encrypt_to_the_pinned_string(alg, collection, path, nonce, plaintext, expected) -> None:
    if alg == "g":
        assert KEY.encrypt(plaintext, collection, path, nonce=nonce) == expected
    else:
        assert KEY.encrypt_deterministic(plaintext, collection, path) == expected
    assert decrypt({"k1": KEY}, expected, collection, path) == plaintext


@pytest.mark.parametrize(("alg", "collection", "path", "nonce", "plaintext", "expected"), VECTORS)
def test_vectors_decrypt_by_following_the_spec_by_hand(alg, collection, path, nonce, plaintext, expected) -> None:
    scheme, key_id, alg_field, payload = expected.split(".")
    assert (scheme, key_id, alg_field) == ("pf1", "k1", alg)
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    ad = f"pf1.{key_id}.{alg}|{collection}|{path}".encode()
    if alg == "g":
        key = hkdf_sha256(SECRET, b"pf1 aes-256-gcm", 32)
        assert AESGCM(key).decrypt(raw[:12], raw[12:], ad) == plaintext
    else:
        key = hkdf_sha256(SECRET, b"pf1 aes-256-siv", 64)
        assert AESSIV(key).decrypt(raw, [ad]) == plaintext


def test_blind_index_vector_and_by_hand() -> None:
    value, expected = BLIND_INDEX_VECTOR
    assert BlindIndexer(INDEX_SECRET)(value) == expected
    key = hkdf_sha256(INDEX_SECRET, b"pf1 hmac-sha256 blind index", 32)
    assert hmac.new(key, value.encode(), hashlib.sha256).hexdigest() == expected


def test_randomized_differs_each_time_deterministic_does_not() -> None:
    a, b = (KEY.encrypt(b"x@y.io", "customers", "email") for _ in range(2))
    assert a != b and is_envelope(a) and a.isascii()
    assert KEY.encrypt_deterministic(b"x", "c", "f") == KEY.encrypt_deterministic(b"x", "c", "f")
    assert KEY.encrypt_deterministic(b"x", "c", "f") != KEY.encrypt_deterministic(b"x", "c", "g")


@pytest.mark.parametrize(("collection", "path"), [("customers", "phone"), ("stores", "email"), ("customers", "")])
def test_associated_data_binds_collection_and_field(collection: str, path: str) -> None:
    env = KEY.encrypt(b"anna@example.com", "customers", "email")
    with pytest.raises(EnvelopeError, match="does not authenticate"):
        decrypt({"k1": KEY}, env, collection, path)


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


@pytest.mark.parametrize("value", ["", "anna@example.com", "pf1.K1.g.abc", "pf2.k1.g.abc", "pf1.k1.x.abc",
                                   "pf1.k1.g.ab=c", "pf1.k1.g."])
def test_not_an_envelope(value: str) -> None:
    assert not is_envelope(value)
    with pytest.raises(EnvelopeError, match="not a pf1 envelope"):
        parse(value)


def test_bad_key_material_is_refused() -> None:
    with pytest.raises(EnvelopeError, match="32 bytes"):
        DataKey.from_secret("k1", b"short")
    with pytest.raises(EnvelopeError, match="lowercase"):
        DataKey.from_secret("K-1", SECRET)


@pytest.mark.parametrize(("alg", "collection", "path", "nonce", "plaintext", "expected"), VECTORS)
def test_sealer_gives_the_pinned_vectors(alg, collection, path, nonce, plaintext, expected, monkeypatch) -> None:
    """The processor's bound per-field encryptor writes exactly what `encrypt`/`encrypt_deterministic` write."""
    from smt import envelope

    if alg == "g":
        monkeypatch.setattr(envelope._NONCES, "pool", [nonce])
    assert KEY.sealer(alg, collection, path)(plaintext) == expected
    with pytest.raises(EnvelopeError, match="unknown envelope algorithm"):
        KEY.sealer("x", collection, path)


def test_sealer_nonces_are_fresh_across_pool_refills() -> None:
    seal = KEY.sealer("g", "customers", "email")
    envelopes = [seal(b"same") for _ in range(2500)]  # more than two pool refills of 1024
    nonces = {parse(e)[2][:16] for e in envelopes}  # base64url of the 12-byte nonce: 16 chars
    assert len(nonces) == len(envelopes)
    assert all(decrypt({"k1": KEY}, e, "customers", "email") == b"same" for e in envelopes[::97])


def test_blind_index_cache_hits_equal_fresh_digests(monkeypatch) -> None:
    value, expected = BLIND_INDEX_VECTOR
    indexer = BlindIndexer(INDEX_SECRET)
    assert indexer.cached(value) is None
    assert indexer(value) == expected and indexer.cached(value) == expected
    monkeypatch.setattr(BlindIndexer, "CACHE_LIMIT", 3)
    fresh = BlindIndexer(INDEX_SECRET)
    for i in range(10):  # clears when full; `cached` must keep seeing the live cache
        assert fresh(f"v{i}") == indexer(f"v{i}") == fresh.cached(f"v{i}")


def test_forked_child_never_reuses_the_parents_pending_nonces() -> None:
    import os

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
