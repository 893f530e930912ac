"""The operator decrypt audit: one JSON line per `freshctl secure decrypt`, appended (O_APPEND, mode
0600) to `Settings.decrypt_audit_path`, by default `<keyring dir>/decrypt-audit.jsonl`, after the
outcome is known, on failure too. The file is opened before anything is decrypted, so a command
that cannot leave its record decrypts nothing.

A record holds who (OS user, uid, FRESH_OPERATOR, host), when, what was asked (mode, entity,
field, DLQ source topic: the operator's arguments), which keys (ids the keyring knows; anything
else counts as "unknown"), how many values and records, and the outcome with the one-line error.
Never a value, a plaintext, a record key or key material (tests/unit/smt/test_smt_decrypt_audit.py).
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fresh.errors import ConfigError, FreshError
from fresh.pipeline import Entity
from fresh.settings import Settings
from smt.envelope import ENVELOPE, decrypt
from smt.keyring import Keyring
from smt.processor import DLQ_COLLECTION
from smt.transform import compile_rules, decrypt_record

AUDIT_FILE = "decrypt-audit.jsonl"


class AuditError(FreshError):
    """The decrypt audit file cannot be opened or written; nothing is decrypted without it."""


def audit_path(settings: Settings) -> Path:
    return settings.decrypt_audit_path or settings.keyring_path.parent / AUDIT_FILE


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no USER/LOGNAME and no passwd entry (containers)
        return f"uid:{os.getuid()}"


def envelopes_in(value: Any) -> Iterator[str]:
    """Every envelope string in a JSON value (object keys are never envelopes: not looked at)."""
    if isinstance(value, str):
        if ENVELOPE.match(value):
            yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from envelopes_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from envelopes_in(v)


class DecryptAudit:
    """Open (create, 0600) the audit file for appending; `write` one record; `close`."""

    def __init__(self, path: Path, operator: str = ""):
        self.path = path
        self.operator = operator
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise AuditError(f"{path}: cannot open the decrypt audit file ({exc.strerror}); "
                             "fix it or set FRESH_DECRYPT_AUDIT_PATH") from None
        mode = os.fstat(self._fd).st_mode
        if mode & 0o077:
            os.close(self._fd)
            raise AuditError(f"{path}: readable by group or others (mode {stat.S_IMODE(mode):o}); "
                             f"run `chmod 600 {path}`")

    def write(self, *, mode: str, entity: str | None, field: str | None, dlq_source: str | None,
              key_ids: set[str], values: int, records: int, outcome: str, error: str | None) -> dict[str, Any]:
        record = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "event": "secure.decrypt",
            "os_user": _os_user(),
            "uid": os.getuid(),
            "operator": self.operator or None,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "mode": mode,
            "entity": entity,
            "field": field,
            "dlq_source": dlq_source,
            "key_ids": sorted(key_ids),
            "values": values,
            "records": records,
            "outcome": outcome,
            "error": error,
        }
        line = (json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n").encode()
        try:
            written = os.write(self._fd, line)  # one write of one line: appends do not interleave
            os.fsync(self._fd)
        except OSError as exc:
            raise AuditError(f"{self.path}: cannot append the decrypt audit record ({exc.strerror})") from None
        if written != len(line):
            raise AuditError(f"{self.path}: short write of the decrypt audit record")
        return record

    def close(self) -> None:
        os.close(self._fd)


@dataclass
class DecryptRequest:
    """What the operator asked for: one envelope of `entity`/`field`, a DLQ payload of `dlq_source`,
    or whole records (`lines`, JSON one a line, named `lines_name` in errors)."""

    entity: Entity | None = None
    field: str | None = None
    dlq_source: str | None = None
    value: str | None = None
    lines: Iterable[str] | None = None
    lines_name: str = "-"
    record_id: str = ""  # the business key of the value's record: randomized pf2 envelopes are bound to it

    @property
    def mode(self) -> str:
        return "dlq" if self.dlq_source else "records" if self.lines is not None else "value"


def decrypt_audited(request: DecryptRequest, load_keyring: Callable[[], Keyring], audit: DecryptAudit) -> list[bytes]:
    """Decrypt what `request` names into memory, then append the audit record (outcome "ok"), then
    return the plaintexts for the caller to print. On any failure the record says "error" (with
    the one-line message of a FreshError, the exception type otherwise) and the error propagates."""
    outputs: list[bytes] = []
    key_ids: set[str] = set()
    counts = {"values": 0, "records": 0}
    known: set[str] = set()

    def note(envelopes: Iterable[str]) -> None:
        for env in envelopes:
            kid = env.split(".", 2)[1]
            key_ids.add(kid if kid in known else "unknown")  # only ids the keyring names: nothing from a record

    def one(keyring: Keyring, collection: str, path: str) -> bytes:
        value = (request.value or "").strip()
        note([value] if ENVELOPE.match(value) else [])
        plain = decrypt(keyring.keys, value, collection, path, request.record_id)
        counts["values"] += 1
        return plain

    try:
        keyring = load_keyring()
        known = {k.id for k in keyring.info if k.kind == "data"}
        if request.dlq_source:
            outputs.append(one(keyring, DLQ_COLLECTION, request.dlq_source))
        elif request.lines is not None:
            assert request.entity is not None
            compile_rules(request.entity)
            for n, line in enumerate(request.lines, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    raise ConfigError(f"{request.lines_name}: line {n} is not JSON") from None
                if not isinstance(record, dict):
                    raise ConfigError(f"{request.lines_name}: line {n} is not a JSON object")
                before = list(envelopes_in(record))
                note(before)
                out = decrypt_record(record, request.entity, keyring)
                counts["values"] += len(before) - sum(1 for _ in envelopes_in(out))
                counts["records"] += 1
                outputs.append(json.dumps(out, ensure_ascii=False).encode())
        else:
            assert request.entity is not None and request.field is not None
            outputs.append(one(keyring, request.entity.collection, request.field))
    except BaseException as exc:
        error = str(exc) if isinstance(exc, FreshError) else type(exc).__name__
        audit.write(mode=request.mode, entity=request.entity.name if request.entity else None, field=request.field,
                    dlq_source=request.dlq_source, key_ids=key_ids, outcome="error", error=error, **counts)
        raise
    audit.write(mode=request.mode, entity=request.entity.name if request.entity else None, field=request.field,
                dlq_source=request.dlq_source, key_ids=key_ids, outcome="ok", error=None, **counts)
    return outputs
