"""The ciphertext envelope: self-describing ASCII that any language with AES-GCM, AES-SIV,
HKDF and HMAC can read. The format is specified in docs/pii.md; test vectors pin it.

    pf1.<key id>.<alg>.<base64url payload, no padding>

    alg "g": randomized AES-256-GCM, payload = nonce (12) || ciphertext || tag (16)
    alg "s": deterministic AES-SIV (RFC 5297, AES-256), payload = SIV (16) || ciphertext

Associated data: UTF-8 of "pf1.<key id>.<alg>|<collection>|<field path>", so a value moved to
another field, collection, key id or algorithm fails authentication.
Subkeys come from each keyring secret with HKDF-SHA256 (no salt) and the infos below.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fresh.errors import FreshError

SCHEME = "pf1"
ALG_RANDOM = "g"
ALG_DETERMINISTIC = "s"
INFO_GCM = b"pf1 aes-256-gcm"
INFO_SIV = b"pf1 aes-256-siv"
INFO_BLIND_INDEX = b"pf1 hmac-sha256 blind index"
NONCE_BYTES = 12
KEY_ID = re.compile(r"^[a-z0-9]{1,32}$")
ENVELOPE = re.compile(r"^pf1\.([a-z0-9]{1,32})\.([gs])\.([A-Za-z0-9_-]+)$")


class EnvelopeError(FreshError):
    """A value is not an envelope, names an unknown key, or fails authentication."""


def derive(secret: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 with no salt (RFC 5869: a zero-filled salt)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def b64url(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).rstrip(b"=").translate(_URLSAFE).decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def associated_data(key_id: str, alg: str, collection: str, path: str) -> bytes:
    return f"{SCHEME}.{key_id}.{alg}|{collection}|{path}".encode()


class _Nonces:
    """96-bit random nonces, drawn from the OS CSPRNG 1024 at a time (one syscall, not one per value).
    A plain list popped under the GIL: each nonce is handed out once, to one thread, and a pop is
    much cheaper than a thread-local buffer and offset."""

    def __init__(self) -> None:
        self.pool: list[bytes] = []

    def take(self) -> bytes:
        while True:
            try:
                return self.pool.pop()
            except IndexError:
                buf = os.urandom(NONCE_BYTES * 1024)
                self.pool.extend([buf[i:i + NONCE_BYTES] for i in range(0, len(buf), NONCE_BYTES)])


_NONCES = _Nonces()
# A forked child must never hand out the nonces its parent still holds (same key, same nonce).
os.register_at_fork(after_in_child=_NONCES.pool.clear)


@dataclass(frozen=True)
class DataKey:
    """One keyring key, ready to use: its derived subkeys as cipher objects, and as bytes for the
    native transform (smt/native), which builds its own ciphers from them. Never printed."""

    id: str
    gcm: AESGCM = field(repr=False)
    siv: AESSIV = field(repr=False)
    subkeys: tuple[bytes, bytes] = field(default=(b"", b""), repr=False, compare=False)  # (gcm 32, siv 64)
    _ads: dict[tuple[str, str, str], bytes] = field(default_factory=dict, repr=False, compare=False)

    def _ad(self, alg: str, collection: str, path: str) -> bytes:
        ad = self._ads.get((alg, collection, path))
        if ad is None:
            ad = self._ads[(alg, collection, path)] = associated_data(self.id, alg, collection, path)
        return ad

    @classmethod
    def from_secret(cls, key_id: str, secret: bytes) -> DataKey:
        if not KEY_ID.match(key_id):
            raise EnvelopeError(f"key id {key_id!r} must be 1-32 lowercase letters or digits")
        if len(secret) != 32:
            raise EnvelopeError(f"key {key_id}: secret must be 32 bytes, got {len(secret)}")
        gcm, siv = derive(secret, INFO_GCM, 32), derive(secret, INFO_SIV, 64)
        return cls(key_id, AESGCM(gcm), AESSIV(siv), (gcm, siv))

    def encrypt(self, plaintext: bytes, collection: str, path: str, nonce: bytes | None = None) -> str:
        """Randomized AES-256-GCM. `nonce` is for test vectors only; leave it None."""
        nonce = _NONCES.take() if nonce is None else nonce
        ad = self._ads.get((ALG_RANDOM, collection, path)) or self._ad(ALG_RANDOM, collection, path)
        return f"{SCHEME}.{self.id}.{ALG_RANDOM}.{b64url(nonce + self.gcm.encrypt(nonce, plaintext, ad))}"

    def encrypt_deterministic(self, plaintext: bytes, collection: str, path: str) -> str:
        ad = self._ad(ALG_DETERMINISTIC, collection, path)
        return f"{SCHEME}.{self.id}.{ALG_DETERMINISTIC}.{b64url(self.siv.encrypt(plaintext, [ad]))}"

    def sealer(self, alg: str, collection: str, path: str) -> Callable[[bytes], str]:
        """`encrypt` (alg "g") or `encrypt_deterministic` (alg "s") for one collection and field,
        with the associated data, prefix and cipher bound once: the processor's per-value call.
        Same output as those two methods (tests/unit/smt/test_smt_envelope.py)."""
        ad = self._ad(alg, collection, path)
        prefix = f"{SCHEME}.{self.id}.{alg}."
        b2a, urlsafe = binascii.b2a_base64, _URLSAFE
        if alg == ALG_RANDOM:
            seal, take, pool = self.gcm.encrypt, _NONCES.take, _NONCES.pool

            def gcm(plaintext: bytes) -> str:
                try:
                    nonce = pool.pop()
                except IndexError:  # empty (or another thread took the last one): refill
                    nonce = take()
                return prefix + b2a(nonce + seal(nonce, plaintext, ad), newline=False).rstrip(b"=").translate(
                    urlsafe).decode("ascii")

            return gcm
        if alg != ALG_DETERMINISTIC:
            raise EnvelopeError(f"unknown envelope algorithm {alg!r} (expected g or s)")
        siv, ads = self.siv.encrypt, [ad]

        def deterministic(plaintext: bytes) -> str:
            return prefix + b2a(siv(plaintext, ads), newline=False).rstrip(b"=").translate(urlsafe).decode("ascii")

        return deterministic


def parse(envelope: str) -> tuple[str, str, str]:
    """Split an envelope into (key id, alg, payload) or raise EnvelopeError."""
    m = ENVELOPE.match(envelope)
    if not m:
        raise EnvelopeError("value is not a pf1 envelope (expected pf1.<key id>.<g|s>.<base64url>)")
    return m.group(1), m.group(2), m.group(3)


def is_envelope(value: object) -> bool:
    return isinstance(value, str) and ENVELOPE.match(value) is not None


def decrypt(keys: Mapping[str, DataKey], envelope: str, collection: str, path: str) -> bytes:
    key_id, alg, payload = parse(envelope)
    key = keys.get(key_id)
    if key is None:
        raise EnvelopeError(f"envelope names key {key_id}, which the keyring does not hold (restore it)")
    try:
        raw = unb64url(payload)
    except (binascii.Error, ValueError):
        raise EnvelopeError("envelope payload is not base64url") from None
    ad = associated_data(key_id, alg, collection, path)
    try:
        if alg == ALG_RANDOM:
            if len(raw) < NONCE_BYTES + 16:
                raise EnvelopeError("envelope payload is too short for AES-GCM")
            return key.gcm.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], ad)
        return key.siv.decrypt(raw, [ad])
    except InvalidTag:
        raise EnvelopeError(
            f"envelope does not authenticate for {collection}.{path} with key {key_id} "
            "(wrong collection/field, or tampered)"
        ) from None


class BlindIndexer:
    """HMAC-SHA256 of the normalized value under the keyring's index key; lowercase hex.
    Not bound to a field, so the same email joins across collections."""

    CACHE_LIMIT = 200_000  # contacts repeat across purchases; cleared when full

    def __init__(self, index_secret: bytes):
        self.key = derive(index_secret, INFO_BLIND_INDEX, 32)  # never printed; the native transform needs it
        self._cache: dict[str, str] = {}
        self.cached = self._cache.get  # the hit path without a call into __call__

    def __call__(self, normalized: str) -> str:
        digest = self._cache.get(normalized)
        if digest is None:
            if len(self._cache) >= self.CACHE_LIMIT:
                self._cache.clear()
            digest = self._cache[normalized] = hmac.digest(self.key, normalized.encode(), hashlib.sha256).hex()
        return digest
