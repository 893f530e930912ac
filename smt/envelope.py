"""The ciphertext envelope: self-describing ASCII that any language with AES-GCM, AES-SIV,
HKDF and HMAC can read. The format is specified in docs/pii.md; test vectors pin it.

    pf2.<key id>.<alg>.<base64url payload, canonical, no padding>      (written)

    alg "g": randomized AES-256-GCM under a batch key: payload = salt (16) || nonce (12) ||
             ciphertext || tag (16); batch key = HKDF-SHA256(GCM subkey, salt, "pf2 aes-256-gcm batch")
    alg "s": deterministic AES-SIV (RFC 5297, AES-256), payload = SIV (16) || ciphertext

    associated data: "pf2.<key id>.g|<collection>|<field path>|<record id>" (g: bound to the record,
    whose id is its business key), "pf2.<key id>.s|<collection>|<field path>" (s: a join key, equal
    across records).

A batch key encrypts one processor batch (and at most 2**20 values): a fresh random salt each
time, so no key ever comes near the 2**32 random-nonce limit of NIST SP 800-38D, however long a
data key stays active. `pf1` (no salt, no record id) is still read. Subkeys come from each keyring
secret with HKDF-SHA256 (no salt) and the infos below.
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

SCHEME = "pf2"
ALG_RANDOM = "g"
ALG_DETERMINISTIC = "s"
INFO_GCM = b"pf2 aes-256-gcm"
INFO_SIV = b"pf2 aes-256-siv"
INFO_GCM_BATCH = b"pf2 aes-256-gcm batch"
INFO_GCM_V1 = b"pf1 aes-256-gcm"
INFO_SIV_V1 = b"pf1 aes-256-siv"
INFO_BLIND_INDEX = b"pf2 hmac-sha256 blind index "  # + the normalizer: email, phone or none
NONCE_BYTES = 12
SALT_BYTES = 16
TAG_BYTES = 16
BATCH_LIMIT = 1 << 20  # values per batch key at most (a processor batch uses far fewer)
KEY_ID = re.compile(r"^[a-z0-9]{1,32}$")
# fullmatch only: `$` would let a trailing newline through
ENVELOPE = re.compile(r"pf([12])\.([a-z0-9]{1,32})\.([gs])\.([A-Za-z0-9_-]+)")
_MIN_PAYLOAD = {("2", "g"): SALT_BYTES + NONCE_BYTES + TAG_BYTES, ("1", "g"): NONCE_BYTES + TAG_BYTES,
                ("2", "s"): TAG_BYTES, ("1", "s"): TAG_BYTES}


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


def canonical_unb64url(text: str) -> bytes:
    """base64url without padding, refusing every non-canonical spelling (a length of 1 mod 4, or
    unused low bits set), so exactly one string maps to one payload."""
    if len(text) % 4 == 1:
        raise EnvelopeError("envelope payload is not canonical base64url")
    try:
        raw = unb64url(text)
    except (binascii.Error, ValueError):
        raise EnvelopeError("envelope payload is not base64url") from None
    if b64url(raw) != text:
        raise EnvelopeError("envelope payload is not canonical base64url")
    return raw


def associated_data(key_id: str, alg: str, collection: str, path: str, record_id: str = "") -> bytes:
    """pf2: randomized values are bound to their record (its id), deterministic ones are not."""
    if alg == ALG_RANDOM:
        return f"{SCHEME}.{key_id}.{alg}|{collection}|{path}|{record_id}".encode()
    return f"{SCHEME}.{key_id}.{alg}|{collection}|{path}".encode()


def associated_data_v1(key_id: str, alg: str, collection: str, path: str) -> bytes:
    return f"pf1.{key_id}.{alg}|{collection}|{path}".encode()


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


class BatchKey:
    """One AES-256-GCM key for one batch: HKDF of the data key's GCM subkey with a fresh random
    salt, carried in every envelope it writes. Not thread-safe by design: one per transform thread."""

    def __init__(self, key: DataKey, salt: bytes | None = None):
        self.key_id = key.id
        self.salt = os.urandom(SALT_BYTES) if salt is None else salt
        self.secret = HKDF(algorithm=hashes.SHA256(), length=32, salt=self.salt,
                           info=INFO_GCM_BATCH).derive(key.gcm_subkey)  # the native path builds its own cipher
        self.gcm = AESGCM(self.secret)
        self.uses = 0

    def seal(self, plaintext: bytes, ad: bytes, nonce: bytes | None = None) -> str:
        """`nonce` is for test vectors only; leave it None."""
        self.uses += 1
        nonce = _NONCES.take() if nonce is None else nonce
        payload = self.salt + nonce + self.gcm.encrypt(nonce, plaintext, ad)
        return f"{SCHEME}.{self.key_id}.{ALG_RANDOM}.{b64url(payload)}"

    @property
    def spent(self) -> bool:
        return self.uses >= BATCH_LIMIT


@dataclass(frozen=True)
class DataKey:
    """One keyring key, ready to use: its derived subkeys (never printed). `gcm_subkey` makes batch
    keys (`BatchKey`), `siv` encrypts deterministically; the v1 ciphers only decrypt."""

    id: str
    gcm_subkey: bytes = field(repr=False)
    siv: AESSIV = field(repr=False)
    siv_subkey: bytes = field(repr=False)
    gcm_v1: AESGCM = field(repr=False)
    siv_v1: AESSIV = field(repr=False)

    @classmethod
    def from_secret(cls, key_id: str, secret: bytes) -> DataKey:
        if not KEY_ID.match(key_id):
            raise EnvelopeError(f"key id {key_id!r} must be 1-32 lowercase letters or digits")
        if len(secret) != 32:
            raise EnvelopeError(f"key {key_id}: secret must be 32 bytes, got {len(secret)}")
        siv = derive(secret, INFO_SIV, 64)
        return cls(key_id, derive(secret, INFO_GCM, 32), AESSIV(siv), siv,
                   AESGCM(derive(secret, INFO_GCM_V1, 32)), AESSIV(derive(secret, INFO_SIV_V1, 64)))

    def batch(self, salt: bytes | None = None) -> BatchKey:
        return BatchKey(self, salt)

    def encrypt(self, plaintext: bytes, collection: str, path: str, record_id: str = "") -> str:
        """Randomized, under a batch key of its own (one value: DLQ payloads, operator tools)."""
        return self.batch().seal(plaintext, associated_data(self.id, ALG_RANDOM, collection, path, record_id))

    def encrypt_deterministic(self, plaintext: bytes, collection: str, path: str) -> str:
        ad = associated_data(self.id, ALG_DETERMINISTIC, collection, path)
        return f"{SCHEME}.{self.id}.{ALG_DETERMINISTIC}.{b64url(self.siv.encrypt(plaintext, [ad]))}"


def parse(envelope: str) -> tuple[str, str, str, bytes]:
    """(version, key id, alg, payload) of a strictly valid envelope, or EnvelopeError: the whole
    string must match, the payload be canonical base64url and long enough for its algorithm."""
    m = ENVELOPE.fullmatch(envelope) if isinstance(envelope, str) else None
    if not m:
        raise EnvelopeError("value is not an envelope (expected pf2.<key id>.<g|s>.<base64url>)")
    version, key_id, alg, text = m.groups()
    raw = canonical_unb64url(text)
    if len(raw) < _MIN_PAYLOAD[(version, alg)]:
        raise EnvelopeError(f"envelope payload is too short for alg {alg}")
    return version, key_id, alg, raw


def is_envelope(value: object) -> bool:
    """The shape only (the guard's check on what the transform wrote); `parse` is the strict reader."""
    return isinstance(value, str) and ENVELOPE.fullmatch(value) is not None


def decrypt(keys: Mapping[str, DataKey], envelope: str, collection: str, path: str, record_id: str = "") -> bytes:
    """The plaintext of an envelope written for `collection`/`path` (and, pf2 `g`, the record with
    business key `record_id`)."""
    version, key_id, alg, raw = parse(envelope)
    key = keys.get(key_id)
    if key is None:
        raise EnvelopeError(f"envelope names key {key_id}, which the keyring does not hold (restore it)")
    try:
        if version == "1":
            ad = associated_data_v1(key_id, alg, collection, path)
            if alg == ALG_RANDOM:
                return key.gcm_v1.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], ad)
            return key.siv_v1.decrypt(raw, [ad])
        ad = associated_data(key_id, alg, collection, path, record_id)
        if alg == ALG_RANDOM:
            batch = BatchKey(key, raw[:SALT_BYTES])
            body = raw[SALT_BYTES:]
            return batch.gcm.decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], ad)
        return key.siv.decrypt(raw, [ad])
    except InvalidTag:
        bound = f" record {record_id!r}" if version == "2" and alg == ALG_RANDOM else ""
        raise EnvelopeError(
            f"envelope does not authenticate for {collection}.{path}{bound} with key {key_id} "
            "(wrong collection, field or record, or tampered)"
        ) from None


class BlindIndexer:
    """`<index key id>.<hex HMAC-SHA256>` of a normalized value, under a subkey per kind of value
    (email, phone, none), so an email and a phone number never share an index key. Not bound to a
    field: the same email joins across collections."""

    CACHE_LIMIT = 200_000  # contacts repeat across purchases; cleared when full
    KINDS = ("email", "phone", "none")

    def __init__(self, index_secret: bytes, key_id: str = "i0"):
        self.id = key_id
        # never printed; the native transform needs them
        self.keys = {kind: derive(index_secret, INFO_BLIND_INDEX + kind.encode(), 32) for kind in self.KINDS}
        self._caches: dict[str, dict[str, str]] = {kind: {} for kind in self.KINDS}

    def cached(self, kind: str) -> Callable[[str], str | None]:
        """The cache lookup of one kind: the hit path without a call into `index`."""
        return self._caches[kind].get

    def index(self, normalized: str, kind: str = "none") -> str:
        cache = self._caches[kind]
        digest = cache.get(normalized)
        if digest is None:
            if len(cache) >= self.CACHE_LIMIT:
                cache.clear()
            mac = hmac.digest(self.keys[kind], normalized.encode(), hashlib.sha256).hex()
            digest = cache[normalized] = f"{self.id}.{mac}"
        return digest

    __call__ = index
