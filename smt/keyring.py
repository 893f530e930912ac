"""The keyring: data keys (one active, the others decrypt-only, disabled or destroyed) and blind-index
keys (one active, one more while a dual-write window is open). It lives in a file outside the
repository (`Settings.keyring_path`, mode 0600, checked on read) wrapped by a key-encryption key
(`Kek`: a passphrase through scrypt or a KEK file), or, read-only, in FRESH_KEYRING_JSON.
docs/pii.md ("Keyring") specifies the formats, the states and their transitions.

The keyring itself (inside the wrapper):

    {"format": "probablyfresh-keyring/2",
     "keys": [{"id": "<key id>", "created_at": "<ISO 8601>", "state": "active|decrypt-only|disabled|destroyed",
               "secret": "<base64url, 32 bytes; absent once destroyed>"}, ...],
     "index_keys": [{"id": ..., "created_at": ..., "state": "active|dual-write|retired|disabled|destroyed",
                     "secret": ...}, ...]}

The wrapped file:

    {"format": "probablyfresh-keyring-wrapped/1", "kek": "<KEK id>", "wrapped": "<base64url of Kek.wrap(...)>"}

with associated data "probablyfresh-keyring-wrapped/1|probablyfresh-keyring/2|<KEK id>". The old
unwrapped `probablyfresh-keyring/1` is still read (`freshctl keys wrap` rewrites it wrapped).

Nothing here ever logs or returns secret material except to build ciphers.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import logging
import os
import re
import secrets
import stat
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from fresh.errors import FreshError
from fresh.settings import REPO_ROOT, Settings
from smt.envelope import KEY_ID, BlindIndexer, DataKey, EnvelopeError, b64url, derive, unb64url

log = logging.getLogger(__name__)
FORMAT_V1 = "probablyfresh-keyring/1"  # unwrapped, no states: read only
FORMAT = "probablyfresh-keyring/2"
WRAPPED = "probablyfresh-keyring-wrapped/1"
FORMATS = (FORMAT_V1, FORMAT, WRAPPED)

DATA_STATES = ("active", "decrypt-only", "disabled", "destroyed")
INDEX_STATES = ("active", "dual-write", "retired", "disabled", "destroyed")


class KeyringError(FreshError):
    """The keyring is missing, invalid, cannot be unwrapped, or cannot be changed where it lives."""


class KeyStateError(KeyringError, EnvelopeError):
    """A key exists but its state refuses the use (disabled, destroyed). Also an EnvelopeError, so
    whatever handles a failed decryption handles this one."""


# ---- key-encryption keys ---------------------------------------------------------------------


class Kek(Protocol):
    """A key-encryption key: what a cloud KMS key is to its client (docs/pii.md, "KEK").
    `wrap` returns an opaque blob that only `unwrap` with the same KEK and `aad` opens; `unwrap`
    raises KeyringError with one line (wrong KEK, altered blob) and never returns partial data."""

    @property
    def id(self) -> str:
        """Names the KEK (not secret): stored next to the blob and bound into its associated data."""
        ...

    @property
    def description(self) -> str:
        """For humans: where the KEK comes from (never the key)."""
        ...

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes: ...

    def unwrap(self, blob: bytes, aad: bytes) -> bytes: ...


_NONCE = 12


class PassphraseKek:
    """A KEK from a passphrase: scrypt (RFC 7914) with a fresh 16-byte salt per wrap, AES-256-GCM.

    blob = "pfs1" || log2(N) || r || p || salt (16) || check (8) || nonce (12) || ciphertext || tag

    scrypt yields 64 bytes: the first 32 are the AES key, SHA-256 of the last 32 gives `check`, so a
    wrong passphrase is told apart from an altered file (as WinZip AES's password verifier does)."""

    MAGIC = b"pfs1"
    # Read limits: a tampered header must not make us allocate gigabytes (128 * r * N bytes).
    LOG2_N_RANGE = range(10, 21)
    R_RANGE = range(1, 17)
    P_RANGE = range(1, 5)

    def __init__(self, passphrase: str, log2_n: int = 15, r: int = 8, p: int = 1, source: str = "passphrase"):
        if not passphrase:
            raise KeyringError(f"{source}: the passphrase is empty")
        self._passphrase = passphrase.encode()
        self.log2_n, self.r, self.p = log2_n, r, p
        self.source = source
        self._cache: dict[bytes, tuple[bytes, bytes]] = {}  # header+salt -> (key, check): reloads stay cheap

    @property
    def id(self) -> str:
        return "passphrase"

    @property
    def description(self) -> str:
        return f"passphrase from {self.source} (scrypt N=2^{self.log2_n} r={self.r} p={self.p}, AES-256-GCM)"

    def _derive(self, params: bytes, salt: bytes) -> tuple[bytes, bytes]:
        cached = self._cache.get(params + salt)
        if cached is None:
            out = Scrypt(salt=salt, length=64, n=2 ** params[0], r=params[1], p=params[2]).derive(self._passphrase)
            cached = self._cache[params + salt] = (out[:32], hashlib.sha256(out[32:]).digest()[:8])
        return cached

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes:
        params, salt, nonce = bytes([self.log2_n, self.r, self.p]), os.urandom(16), os.urandom(_NONCE)
        key, check = self._derive(params, salt)
        return self.MAGIC + params + salt + check + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        if len(blob) < 4 + 3 + 16 + 8 + _NONCE + 16 or not blob.startswith(self.MAGIC):
            raise KeyringError("the wrapped keyring is not a passphrase blob (altered, or wrapped by another KEK)")
        params, salt, check = blob[4:7], blob[7:23], blob[23:31]
        if params[0] not in self.LOG2_N_RANGE or params[1] not in self.R_RANGE or params[2] not in self.P_RANGE:
            raise KeyringError("the wrapped keyring's scrypt parameters are out of range (altered file)")
        key, expected = self._derive(params, salt)
        if not secrets.compare_digest(check, expected):
            raise KeyringError(f"wrong passphrase: {self.source} does not open this keyring")
        try:
            return AESGCM(key).decrypt(blob[31:31 + _NONCE], blob[31 + _NONCE:], aad)
        except InvalidTag:
            raise KeyringError("the wrapped keyring does not authenticate: the file was altered") from None


class FileKek:
    """A KEK in a file outside the repository: 32 random bytes (raw, or base64 text), mode 0600.
    The wrapping key and the KEK id are HKDF subkeys of it; blob = nonce (12) || ciphertext || tag."""

    def __init__(self, path: Path):
        self.path = path
        if path.resolve().is_relative_to(REPO_ROOT):
            raise KeyringError(f"{path}: the KEK file is inside the repository; move it out and set FRESH_KEK_PATH")
        try:
            st = path.stat()
            raw = path.read_bytes()
        except FileNotFoundError:
            raise KeyringError(f"{path}: KEK file not found (FRESH_KEK_PATH); create it with "
                               f"`head -c 32 /dev/urandom > {path} && chmod 600 {path}`") from None
        except OSError as exc:
            raise KeyringError(f"{path}: cannot read the KEK file ({exc.strerror})") from None
        _check_mode(path, st.st_mode)
        secret = raw if len(raw) == 32 else _b64_32(raw)
        if secret is None:
            raise KeyringError(f"{path}: a KEK file holds 32 random bytes (raw or base64), found {len(raw)} bytes")
        self._key = derive(secret, b"probablyfresh kek wrap", 32)
        self._id = "file:" + derive(secret, b"probablyfresh kek id", 8).hex()

    @property
    def id(self) -> str:
        return self._id

    @property
    def description(self) -> str:
        return f"KEK file {self.path} (AES-256-GCM)"

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + AESGCM(self._key).encrypt(nonce, plaintext, aad)

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        try:
            return AESGCM(self._key).decrypt(blob[:_NONCE], blob[_NONCE:], aad)
        except (InvalidTag, ValueError):
            raise KeyringError("the wrapped keyring does not authenticate with this KEK: the file was altered"
                               ) from None


def _b64_32(raw: bytes) -> bytes | None:
    try:
        text = raw.decode("ascii").strip()
        out = unb64url(text.replace("+", "-").replace("/", "_").rstrip("="))
    except (UnicodeDecodeError, binascii.Error, ValueError):
        return None
    return out if len(out) == 32 else None


def local_kek_path(settings: Settings) -> Path:
    """Where `freshctl up` keeps the local stack's KEK file when none is configured: next to the
    keyring (`<keyring dir>/kek`, mode 0600). Production sets FRESH_KEK_PATH or a passphrase (or a
    KMS), kept apart from the keyring."""
    return settings.keyring_path.parent / "kek"


def kek_from_settings(settings: Settings) -> Kek | None:
    """The configured KEK: FRESH_KEK_PATH or FRESH_KEYRING_PASSPHRASE (not both); else the local
    KEK file `freshctl up` created (`local_kek_path`) if it exists; else None."""
    passphrase = settings.keyring_passphrase.get_secret_value()
    if settings.kek_path and passphrase:
        raise KeyringError("both FRESH_KEK_PATH and FRESH_KEYRING_PASSPHRASE are set; set one KEK")
    if settings.kek_path:
        return FileKek(settings.kek_path)
    if passphrase:
        return PassphraseKek(passphrase, source="FRESH_KEYRING_PASSPHRASE")
    if local_kek_path(settings).exists():
        return FileKek(local_kek_path(settings))
    return None


def new_keyring(settings: Settings, dry_run: bool = False) -> tuple[KeyringSource, list[KeyInfo], Path | None]:
    """Create the keyring of `settings` (`keys generate`, and `freshctl up` when there is none).
    Without a configured KEK (and without FRESH_KEYRING_ALLOW_UNWRAPPED) a local KEK file is created
    first at `local_kek_path` and found there from then on. Returns the source, the new keys and the
    KEK file created (None if none was)."""
    source = KeyringSource.from_settings(settings)
    kek_file = None
    if source.kek is None and not source.allow_unwrapped and source.writable:
        kek_file = local_kek_path(settings)
        if dry_run:
            source.allow_unwrapped = True  # nothing is written: show the keys without a KEK
        else:
            source.kek = create_kek_file(kek_file)
    return source, source.generate(dry_run=dry_run), kek_file


def create_kek_file(path: Path) -> FileKek:
    """A new KEK file: 32 random bytes, mode 0600, never over an existing file."""
    if path.resolve().is_relative_to(REPO_ROOT):
        raise KeyringError(f"{path}: refusing to write a KEK inside the repository; set FRESH_KEYRING_PATH")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyringError(f"{path}: a KEK file exists already; use it (FRESH_KEK_PATH) or move it away") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(secrets.token_bytes(32))
    return FileKek(path)


def wrap_aad(kek_id: str) -> bytes:
    return f"{WRAPPED}|{FORMAT}|{kek_id}".encode()


# ---- the keyring, parsed -----------------------------------------------------------------------


@dataclass(frozen=True)
class KeyInfo:
    id: str
    created_at: str
    role: str  # the state: see DATA_STATES / INDEX_STATES
    kind: str = "data"  # "data" or "index"


class KeyMap(dict[str, DataKey]):
    """The data keys that may decrypt (active and decrypt-only), by id. Looking up a disabled or
    destroyed id raises KeyStateError naming the state and the fix, so `envelope.decrypt` (which
    calls `.get`) says "key destroyed" instead of "unknown key"."""

    def __init__(self, usable: dict[str, DataKey], refused: dict[str, str]):
        super().__init__(usable)
        self.refused = refused  # key id -> "disabled" | "destroyed"

    def _refuse(self, key_id: str) -> KeyStateError:
        if self.refused[key_id] == "destroyed":
            return KeyStateError(f"key {key_id} was destroyed: values encrypted with it cannot be decrypted")
        return KeyStateError(f"key {key_id} is disabled: it decrypts nothing until `freshctl keys enable {key_id}`")

    def get(self, key_id: str, default: Any = None) -> Any:
        if key_id in self.refused:
            raise self._refuse(key_id)
        return super().get(key_id, default)

    def __missing__(self, key_id: str) -> DataKey:
        if key_id in self.refused:
            raise self._refuse(key_id)
        raise KeyError(key_id)


@dataclass(frozen=True)
class Keyring:
    active: DataKey
    keys: dict[str, DataKey]  # a KeyMap: active + decrypt-only; disabled/destroyed ids raise KeyStateError
    blind_index: BlindIndexer  # from the active index key
    info: list[KeyInfo]
    origin: str
    index_keys: dict[str, bytes] = field(default_factory=dict, repr=False)  # id -> 32-byte secret; active first
    active_index: str = ""
    dual_write_index: str | None = None  # the previous index key while a dual-write window is open
    kek_id: str | None = None  # the KEK that wrapped it; None: unwrapped

    def state(self, key_id: str) -> str | None:
        return next((k.role for k in self.info if k.id == key_id), None)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _new_entry(prefix: str, state: str) -> dict[str, str]:
    return {
        "id": prefix + datetime.now(UTC).strftime("%Y%m%d") + secrets.token_hex(3),
        "created_at": _now(),
        "state": state,
        "secret": b64url(secrets.token_bytes(32)),
    }


def _secret(entry: dict[str, Any], where: str) -> bytes:
    try:
        raw = unb64url(str(entry["secret"]))
    except (KeyError, binascii.Error, ValueError):
        raise KeyringError(f"{where}: 'secret' is missing or not base64url") from None
    if len(raw) != 32:
        raise KeyringError(f"{where}: 'secret' must decode to 32 bytes, got {len(raw)}")
    return raw


def _upgrade_v1(data: dict[str, Any], origin: str) -> dict[str, Any]:
    """probablyfresh-keyring/1 (an `active` id, no states, one `index_key`) as /2."""
    entries, index = data.get("keys"), data.get("index_key")
    if not isinstance(entries, list) or not entries:
        raise KeyringError(f"{origin}: 'keys' must be a non-empty list (run `freshctl keys generate`)")
    if not isinstance(index, dict):
        raise KeyringError(f"{origin}: 'index_key' is missing (run `freshctl keys generate` for a new keyring)")
    if data.get("active") not in {e.get("id") for e in entries if isinstance(e, dict)}:
        raise KeyringError(f"{origin}: 'active' must name one of the keys")
    keys = [{**e, "state": "active" if e.get("id") == data["active"] else "decrypt-only"}
            for e in entries if isinstance(e, dict)]
    if len(keys) != len(entries):
        raise KeyringError(f"{origin}: every entry of 'keys' must be an object")
    return {"format": FORMAT, "keys": keys, "index_keys": [{**index, "state": "active"}]}


def _entries(data: dict[str, Any], name: str, states: tuple[str, ...], origin: str) -> list[dict[str, Any]]:
    entries = data.get(name)
    if not isinstance(entries, list) or not entries:
        raise KeyringError(f"{origin}: '{name}' must be a non-empty list (run `freshctl keys generate`)")
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"{origin}: {name}[{i}]"
        if not isinstance(entry, dict) or not KEY_ID.match(str(entry.get("id", ""))):
            raise KeyringError(f"{where}: 'id' must be 1-32 lowercase letters or digits")
        if entry["id"] in seen:
            raise KeyringError(f"{where}: duplicate key id {entry['id']}")
        seen.add(entry["id"])
        if entry.get("state") not in states:
            raise KeyringError(f"{where}: 'state' must be one of {', '.join(states)}")
        if entry["state"] == "destroyed":
            if "secret" in entry:
                raise KeyringError(f"{where}: a destroyed key must not hold a 'secret'")
        else:
            _secret(entry, where)
    return entries


def _one(entries: list[dict[str, Any]], state: str, name: str, origin: str, required: bool = True) -> str | None:
    ids = [e["id"] for e in entries if e["state"] == state]
    if len(ids) > 1 or (required and not ids):
        raise KeyringError(f"{origin}: '{name}' must hold {'exactly' if required else 'at most'} one {state} key, "
                           f"found {len(ids)}")
    return ids[0] if ids else None


def parse_keyring(data: Any, origin: str, kek_id: str | None = None) -> Keyring:
    """A keyring from its plain JSON (/1 or /2); `kek_id` names the KEK it was unwrapped with."""
    if isinstance(data, dict) and data.get("format") == FORMAT_V1:
        data = _upgrade_v1(data, origin)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise KeyringError(f"{origin}: not a keyring (expected \"format\": one of {', '.join(FORMATS)})")
    entries = _entries(data, "keys", DATA_STATES, origin)
    index_entries = _entries(data, "index_keys", INDEX_STATES, origin)
    active = _one(entries, "active", "keys", origin)
    active_index = _one(index_entries, "active", "index_keys", origin)
    dual = _one(index_entries, "dual-write", "index_keys", origin, required=False)
    assert active is not None and active_index is not None
    usable: dict[str, DataKey] = {}
    refused: dict[str, str] = {}
    for i, e in enumerate(entries):
        if e["state"] in ("active", "decrypt-only"):
            try:
                usable[e["id"]] = DataKey.from_secret(e["id"], _secret(e, f"{origin}: keys[{i}]"))
            except EnvelopeError as exc:
                raise KeyringError(f"{origin}: keys[{i}]: {exc}") from None
        else:
            refused[e["id"]] = e["state"]
    order = {"active": 0, "dual-write": 1, "retired": 2}
    index_keys = {e["id"]: _secret(e, f"{origin}: index_keys")
                  for e in sorted(index_entries, key=lambda e: order.get(e["state"], 9)) if e["state"] in order}
    info = [KeyInfo(str(e["id"]), str(e.get("created_at", "")), e["state"], "data") for e in entries]
    info += [KeyInfo(str(e["id"]), str(e.get("created_at", "")), e["state"], "index") for e in index_entries]
    indexer = BlindIndexer(index_keys[active_index], active_index)
    return Keyring(usable[active], KeyMap(usable, refused), indexer, info, origin, index_keys, active_index, dual,
                   kek_id)


# ---- files -------------------------------------------------------------------------------------


def _inside_repo(path: Path) -> bool:
    return path.resolve().is_relative_to(REPO_ROOT)


def _check_mode(path: Path, mode: int) -> None:
    if mode & 0o077:
        raise KeyringError(f"{path}: readable by group or others (mode {stat.S_IMODE(mode):o}); "
                           f"run `chmod 600 {path}`")


def _load_json(text: str, origin: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise KeyringError(f"{origin}: not valid JSON (line {exc.lineno})") from None


def _read_file(path: Path) -> Any:
    if _inside_repo(path):
        raise KeyringError(f"{path}: keyring is inside the repository; move it out and set FRESH_KEYRING_PATH")
    try:
        with path.open(encoding="utf-8") as fh:
            _check_mode(path, os.fstat(fh.fileno()).st_mode)
            text = fh.read()
    except FileNotFoundError:
        raise KeyringError(f"{path}: keyring not found (run `freshctl keys generate`)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyringError(f"{path}: cannot read the keyring ({getattr(exc, 'strerror', None) or 'not UTF-8'})"
                           ) from None
    return _load_json(text, str(path))


_B64URL = re.compile(r"^[A-Za-z0-9_-]+$")


def unwrap(data: Any, kek: Kek | None, origin: str) -> tuple[Any, str | None]:
    """The plain keyring JSON inside `data` (and the KEK id), or `data` itself if it is not wrapped."""
    if not isinstance(data, dict) or data.get("format") != WRAPPED:
        return data, None
    kek_id = str(data.get("kek", ""))
    if kek is None:
        raise KeyringError(f"{origin}: the keyring is wrapped by KEK {kek_id!r}; "
                           "set FRESH_KEYRING_PASSPHRASE or FRESH_KEK_PATH")
    if kek.id != kek_id:
        raise KeyringError(f"{origin}: the keyring is wrapped by KEK {kek_id!r}, but the configured KEK is "
                           f"{kek.id!r} ({kek.description})")
    try:
        text = data["wrapped"]
        if not isinstance(text, str) or not _B64URL.match(text):
            raise ValueError("not base64url")
        blob = unb64url(text)
    except (KeyError, binascii.Error, ValueError):
        raise KeyringError(f"{origin}: 'wrapped' is missing or not base64url (altered file)") from None
    try:
        plain = kek.unwrap(blob, wrap_aad(kek_id))
    except KeyringError as exc:
        raise KeyringError(f"{origin}: {exc}") from None
    return _load_json(plain.decode("utf-8", "replace"), origin), kek_id


def wrap(plain: dict[str, Any], kek: Kek) -> dict[str, Any]:
    blob = kek.wrap(json.dumps(plain, separators=(",", ":")).encode(), wrap_aad(kek.id))
    return {"format": WRAPPED, "kek": kek.id, "wrapped": b64url(blob)}


def _write_file(path: Path, data: dict[str, Any]) -> None:
    if _inside_repo(path):
        raise KeyringError(f"{path}: refusing to write a keyring inside the repository; set FRESH_KEYRING_PATH")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".keyring-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)  # atomic: a running processor never reads half a keyring
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---- the source, and its changes -----------------------------------------------------------------

_ENABLED = {"data": "decrypt-only", "index": "retired"}


class KeyringSource:
    """Where the keyring comes from; `current()` re-reads the file when it changed on disk, so a
    rotation reaches a running processor without a restart.

    Writes are wrapped by `kek`. Without a KEK a write is refused unless `allow_unwrapped` (the
    explicit FRESH_KEYRING_ALLOW_UNWRAPPED=true, for throwaway keyrings in tests and demos)."""

    def __init__(self, path: Path | None = None, env_json: str = "", kek: Kek | None = None,
                 allow_unwrapped: bool = False):
        if not path and not env_json:
            raise KeyringError("no keyring: set FRESH_KEYRING_PATH or FRESH_KEYRING_JSON")
        self.path = path
        self.env_json = env_json
        self.kek = kek
        self.allow_unwrapped = allow_unwrapped
        self._stamp: tuple[int, int] | None = None
        self._keyring: Keyring | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyringSource:
        env_json = settings.keyring_json.get_secret_value()
        return cls(None if env_json else settings.keyring_path, env_json, kek_from_settings(settings),
                   settings.keyring_allow_unwrapped)

    @property
    def writable(self) -> bool:
        return not self.env_json

    def _stat(self) -> tuple[int, int] | None:
        assert self.path is not None
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _load(self, data: Any, origin: str) -> Keyring:
        plain, kek_id = unwrap(data, self.kek, origin)
        keyring = parse_keyring(plain, origin, kek_id)
        if kek_id is None:
            log.warning("keyring is not wrapped origin=%s: set a KEK and run `freshctl keys wrap`", origin)
        return keyring

    def current(self) -> Keyring:
        if self.env_json:
            if self._keyring is None:
                self._keyring = self._load(_load_json(self.env_json, "FRESH_KEYRING_JSON"), "FRESH_KEYRING_JSON")
            return self._keyring
        assert self.path is not None
        stamp = self._stat()
        if self._keyring is None or stamp != self._stamp:
            keyring = self._load(_read_file(self.path), str(self.path))
            if self._keyring is not None:
                log.info("keyring reloaded path=%s active=%s keys=%d", self.path, keyring.active.id, len(keyring.keys))
            self._keyring, self._stamp = keyring, stamp
        return self._keyring

    # ---- changes (file keyrings only) -------------------------------------------------------

    def _require_file(self) -> Path:
        if not self.writable or self.path is None:
            raise KeyringError("the keyring comes from FRESH_KEYRING_JSON (read-only); change it where it is stored")
        if _inside_repo(self.path):
            raise KeyringError(f"{self.path}: refusing to write a keyring inside the repository; "
                               "set FRESH_KEYRING_PATH")
        if self.kek is None and not self.allow_unwrapped:
            raise KeyringError("no KEK: set FRESH_KEYRING_PASSPHRASE or FRESH_KEK_PATH to write a wrapped keyring "
                               "(FRESH_KEYRING_ALLOW_UNWRAPPED=true writes it unwrapped: throwaway keyrings only)")
        return self.path

    def _plain(self, read_kek: Kek | None = None) -> dict[str, Any]:
        """The file's keyring as plain /2 JSON, validated (unwrapped by `read_kek`, else by `kek`)."""
        path = self._require_file()
        plain, _ = unwrap(_read_file(path), read_kek or self.kek, str(path))
        parse_keyring(plain, str(path))
        if plain.get("format") == FORMAT_V1:
            plain = _upgrade_v1(plain, str(path))
        return dict(plain)

    def _commit(self, plain: dict[str, Any], dry_run: bool) -> list[KeyInfo]:
        path = self._require_file()
        keyring = parse_keyring(plain, str(path), self.kek.id if self.kek else None)
        if not dry_run:
            _write_file(path, wrap(plain, self.kek) if self.kek else plain)
        return keyring.info

    def _change(self, edit: Callable[[dict[str, Any]], None], dry_run: bool) -> list[KeyInfo]:
        plain = self._plain()
        edit(plain)
        return self._commit(plain, dry_run)

    def generate(self, dry_run: bool = False) -> list[KeyInfo]:
        path = self._require_file()
        if path.exists():
            raise KeyringError(f"{path}: keyring exists; use `freshctl keys rotate` to add a key")
        plain = {"format": FORMAT, "keys": [_new_entry("k", "active")], "index_keys": [_new_entry("i", "active")]}
        return self._commit(plain, dry_run)

    def wrap(self, dry_run: bool = False, from_kek: Kek | None = None) -> list[KeyInfo]:
        """Rewrite the file wrapped by the configured KEK: an unwrapped /1 or /2 file (migration), one
        wrapped by `from_kek` (KEK rotation), or one wrapped by this KEK (fresh salt and nonce)."""
        if self.kek is None:
            raise KeyringError("no KEK: set FRESH_KEYRING_PASSPHRASE or FRESH_KEK_PATH, then run `freshctl keys wrap`")
        return self._commit(self._plain(from_kek), dry_run)

    def rotate(self, dry_run: bool = False) -> list[KeyInfo]:
        """A new data key becomes active; the active one becomes decrypt-only."""
        def edit(plain: dict[str, Any]) -> None:
            for e in plain["keys"]:
                if e["state"] == "active":
                    e["state"] = "decrypt-only"
            plain["keys"].append(_new_entry("k", "active"))
        return self._change(edit, dry_run)

    def rotate_index(self, dry_run: bool = False) -> list[KeyInfo]:
        """Open a dual-write window: a new index key becomes active, the active one dual-write."""
        def edit(plain: dict[str, Any]) -> None:
            entries = plain["index_keys"]
            open_ = [e["id"] for e in entries if e["state"] == "dual-write"]
            if open_:
                raise KeyringError(f"a dual-write window is open (index key {open_[0]}); backfill, then close it with "
                                   "`freshctl keys rotate --index --close-window`")
            for e in entries:
                if e["state"] == "active":
                    e["state"] = "dual-write"
            entries.append(_new_entry("i", "active"))
        return self._change(edit, dry_run)

    def close_index_window(self, dry_run: bool = False) -> list[KeyInfo]:
        """Close the dual-write window: the previous index key is no longer written (retired)."""
        def edit(plain: dict[str, Any]) -> None:
            entries = [e for e in plain["index_keys"] if e["state"] == "dual-write"]
            if not entries:
                raise KeyringError("no dual-write window is open (start one with `freshctl keys rotate --index`)")
            entries[0]["state"] = "retired"
        return self._change(edit, dry_run)

    def _set_state(self, key_id: str, allowed: Iterable[str], target: Callable[[str], str],
                   refuse: Callable[[str, str], str], dry_run: bool) -> list[KeyInfo]:
        def edit(plain: dict[str, Any]) -> None:
            for kind, name in (("data", "keys"), ("index", "index_keys")):
                for e in plain[name]:
                    if e["id"] == key_id:
                        if e["state"] not in allowed:
                            raise KeyringError(refuse(e["state"], kind))
                        e["state"] = target(kind)
                        if e["state"] == "destroyed":
                            del e["secret"]
                            e["destroyed_at"] = _now()
                        return
            raise KeyringError(f"no key {key_id!r} in the keyring (see `freshctl keys list`)")
        return self._change(edit, dry_run)

    def disable(self, key_id: str, dry_run: bool = False) -> list[KeyInfo]:
        """decrypt-only (data) or retired (index) -> disabled: kept, but refuses to be used."""
        def refuse(state: str, kind: str) -> str:
            if state == "active":
                how = "freshctl keys rotate --index" if kind == "index" else "freshctl keys rotate"
                return f"key {key_id} is active; rotate first (`{how}`), then disable it"
            if state == "dual-write":
                return (f"index key {key_id} is in a dual-write window; close it first "
                        "(`freshctl keys rotate --index --close-window`)")
            return f"key {key_id} is {state}; only {'/'.join(_ENABLED.values())} keys can be disabled"
        return self._set_state(key_id, _ENABLED.values(), lambda _kind: "disabled", refuse, dry_run)

    def enable(self, key_id: str, dry_run: bool = False) -> list[KeyInfo]:
        """disabled -> decrypt-only (data) or retired (index)."""
        def refuse(state: str, _kind: str) -> str:
            if state == "destroyed":
                return f"key {key_id} was destroyed; its secret is gone and it cannot be enabled"
            return f"key {key_id} is {state}, not disabled; nothing to enable"
        return self._set_state(key_id, ["disabled"], lambda kind: _ENABLED[kind], refuse, dry_run)

    def destroy(self, key_id: str, dry_run: bool = False) -> list[KeyInfo]:
        """disabled -> destroyed: the secret is erased from the file; the id stays, so envelopes
        naming it fail with "key destroyed". Irreversible (unless a backup of the keyring exists)."""
        def refuse(state: str, _kind: str) -> str:
            if state == "destroyed":
                return f"key {key_id} is already destroyed"
            return f"key {key_id} is {state}; disable it first (`freshctl keys disable {key_id}`), then destroy it"
        return self._set_state(key_id, ["disabled"], lambda _kind: "destroyed", refuse, dry_run)
