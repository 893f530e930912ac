"""The keyring: several keys, one active, plus the blind-index key. It lives in a file outside
the repository (`Settings.keyring_path`, written 0600) or, read-only, in FRESH_KEYRING_JSON.

    {"format": "probablyfresh-keyring/1", "active": "<key id>",
     "keys": [{"id": "<key id>", "created_at": "<ISO 8601>", "secret": "<base64url, 32 bytes>"}, ...],
     "index_key": {"id": "<id>", "created_at": "...", "secret": "<base64url, 32 bytes>"}}

Nothing here ever logs or returns secret material except to build ciphers.
"""

from __future__ import annotations

import binascii
import json
import logging
import os
import secrets
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fresh.errors import FreshError
from fresh.settings import REPO_ROOT, Settings
from smt.envelope import KEY_ID, BlindIndexer, DataKey, EnvelopeError, b64url, unb64url

log = logging.getLogger(__name__)
FORMAT = "probablyfresh-keyring/1"


class KeyringError(FreshError):
    """The keyring is missing, invalid, or cannot be changed where it lives."""


@dataclass(frozen=True)
class KeyInfo:
    id: str
    created_at: str
    role: str  # "active", "decrypt-only" or "blind-index"


@dataclass(frozen=True)
class Keyring:
    active: DataKey
    keys: dict[str, DataKey]
    blind_index: BlindIndexer
    info: list[KeyInfo]
    origin: str


def _new_entry(prefix: str) -> dict[str, str]:
    return {
        "id": prefix + datetime.now(UTC).strftime("%Y%m%d") + secrets.token_hex(3),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
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


def parse_keyring(data: Any, origin: str) -> Keyring:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise KeyringError(f"{origin}: not a keyring (expected \"format\": \"{FORMAT}\")")
    entries = data.get("keys")
    if not isinstance(entries, list) or not entries:
        raise KeyringError(f"{origin}: 'keys' must be a non-empty list (run `freshctl keys generate`)")
    keys: dict[str, DataKey] = {}
    info: list[KeyInfo] = []
    for i, entry in enumerate(entries):
        where = f"{origin}: keys[{i}]"
        if not isinstance(entry, dict) or not KEY_ID.match(str(entry.get("id", ""))):
            raise KeyringError(f"{where}: 'id' must be 1-32 lowercase letters or digits")
        kid = str(entry["id"])
        if kid in keys:
            raise KeyringError(f"{where}: duplicate key id {kid}")
        try:
            keys[kid] = DataKey.from_secret(kid, _secret(entry, where))
        except EnvelopeError as exc:
            raise KeyringError(f"{where}: {exc}") from None
        info.append(KeyInfo(kid, str(entry.get("created_at", "")), "decrypt-only"))
    active = data.get("active")
    if active not in keys:
        raise KeyringError(f"{origin}: 'active' must name one of the keys ({', '.join(keys)})")
    index = data.get("index_key")
    if not isinstance(index, dict):
        raise KeyringError(f"{origin}: 'index_key' is missing (run `freshctl keys generate` for a new keyring)")
    indexer = BlindIndexer(_secret(index, f"{origin}: index_key"))
    info = [KeyInfo(k.id, k.created_at, "active" if k.id == active else k.role) for k in info]
    info.append(KeyInfo(str(index.get("id", "")), str(index.get("created_at", "")), "blind-index"))
    return Keyring(keys[active], keys, indexer, info, origin)


def _inside_repo(path: Path) -> bool:
    return path.resolve().is_relative_to(REPO_ROOT)


def _read_file(path: Path) -> Any:
    if _inside_repo(path):
        raise KeyringError(f"{path}: keyring is inside the repository; move it out and set FRESH_KEYRING_PATH")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KeyringError(f"{path}: keyring not found (run `freshctl keys generate`)") from None
    except json.JSONDecodeError as exc:
        raise KeyringError(f"{path}: not valid JSON (line {exc.lineno})") from None


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


class KeyringSource:
    """Where the keyring comes from; `current()` re-reads the file when it changed on disk, so a
    rotation reaches a running processor without a restart."""

    def __init__(self, path: Path | None = None, env_json: str = ""):
        if not path and not env_json:
            raise KeyringError("no keyring: set FRESH_KEYRING_PATH or FRESH_KEYRING_JSON")
        self.path = path
        self.env_json = env_json
        self._stamp: tuple[int, int] | None = None
        self._keyring: Keyring | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyringSource:
        env_json = settings.keyring_json.get_secret_value()
        return cls(None if env_json else settings.keyring_path, env_json)

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

    def current(self) -> Keyring:
        if self.env_json:
            if self._keyring is None:
                try:
                    data = json.loads(self.env_json)
                except json.JSONDecodeError as exc:
                    raise KeyringError(f"FRESH_KEYRING_JSON: not valid JSON (line {exc.lineno})") from None
                self._keyring = parse_keyring(data, "FRESH_KEYRING_JSON")
            return self._keyring
        assert self.path is not None
        stamp = self._stat()
        if self._keyring is None or stamp != self._stamp:
            keyring = parse_keyring(_read_file(self.path), str(self.path))
            if self._keyring is not None:
                log.info("keyring reloaded path=%s active=%s keys=%d", self.path, keyring.active.id, len(keyring.keys))
            self._keyring, self._stamp = keyring, stamp
        return self._keyring

    # ---- changes (file keyrings only) -------------------------------------------------------

    def _require_file(self) -> Path:
        if not self.writable or self.path is None:
            raise KeyringError("the keyring comes from FRESH_KEYRING_JSON (read-only); change it where it is stored")
        return self.path

    def generate(self, dry_run: bool = False) -> list[KeyInfo]:
        path = self._require_file()
        if path.exists():
            raise KeyringError(f"{path}: keyring exists; use `freshctl keys rotate` to add a key")
        key = _new_entry("k")
        data = {"format": FORMAT, "active": key["id"], "keys": [key], "index_key": _new_entry("i")}
        keyring = parse_keyring(data, str(path))
        if not dry_run:
            _write_file(path, data)
        return keyring.info

    def rotate(self, dry_run: bool = False) -> list[KeyInfo]:
        """Add a new key and make it active; old keys stay for decryption. The blind-index key is
        not rotated: indexes must stay comparable (docs/pii.md)."""
        path = self._require_file()
        data = _read_file(path)
        parse_keyring(data, str(path))
        key = _new_entry("k")
        data["keys"].append(key)
        data["active"] = key["id"]
        keyring = parse_keyring(data, str(path))
        if not dry_run:
            _write_file(path, data)
        return keyring.info
