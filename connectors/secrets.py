"""Secrets in connector configs: recognise provider references, mask anything secret-looking
for display, and write the local stack's provider file (never into a tracked path)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

# ${provider:path:key} or ${provider:key}: Kafka Connect resolves these on the worker.
PROVIDER_REF = re.compile(r"^\$\{[A-Za-z0-9_.-]+:[^{}]*\}$")
SECRET_KEY = re.compile(r"(password|secret|connection\.string|credential|jaas\.config|token|api\.key|key\.pem)", re.I)
# user:password@ inside a URI such as mongodb://user:pass@host
URI_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@", re.I)
MASK = "[hidden]"


def is_provider_ref(value: object) -> bool:
    return isinstance(value, str) and bool(PROVIDER_REF.match(value.strip()))


def is_secret_key(key: str) -> bool:
    return bool(SECRET_KEY.search(key))


def mask_value(key: str, value: str | None) -> str | None:
    """What may be shown for `key`: provider references as they are, other secrets masked."""
    if value is None or is_provider_ref(value):
        return value
    if is_secret_key(key):
        return MASK
    return mask_text(value)


def mask_text(text: str) -> str:
    return URI_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)


def mask_config(config: Mapping[str, str]) -> dict[str, str | None]:
    return {k: mask_value(k, v) for k, v in config.items()}


def write_properties_secret(path: Path, key: str, value: str) -> bool:
    """Write `key=value` into a properties file readable only by its owner; True if it changed."""
    escaped = value.replace("\\", "\\\\").replace("\n", "\\n")
    text = f"# written by freshctl connectors; resolved by the Connect worker's file config provider\n{key}={escaped}\n"
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)
    return True
