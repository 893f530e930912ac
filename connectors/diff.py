"""Rendered config against the live one. Not drift: keys Connect injects (`name`), and values
the worker shows masked or resolved where the rendered side holds a provider reference.
Values are shown masked (`connectors.secrets.mask_value`), never in plaintext."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

from connectors.secrets import MASK, is_provider_ref, mask_value
from fresh.errors import DriftError as FreshDriftError

INJECTED_KEYS = frozenset({"name"})
MASKED_VALUES = frozenset({MASK, "********", "<redacted>", "[redacted]"})


class DriftError(FreshDriftError):
    """Live connectors differ from the rendered ones (exit 3)."""


@dataclass(frozen=True)
class Change:
    connector: str
    key: str
    change: str  # "added" (only rendered), "removed" (only live), "changed"
    rendered: str | None
    live: str | None

    def row(self) -> dict[str, str | None]:
        return asdict(self)


def _same(rendered: str, live: str) -> bool:
    if rendered == live:
        return True
    if live in MASKED_VALUES:
        return True
    # The worker may show a resolved value for a reference; a different *reference* is drift.
    return is_provider_ref(rendered) and not is_provider_ref(live)


def diff_config(name: str, rendered: Mapping[str, str], live: Mapping[str, str] | None) -> list[Change]:
    """Changes that applying `rendered` would make to `live` (None: the connector is missing)."""
    if live is None:
        return [Change(name, "*", "added", "(new connector)", None)]
    changes = []
    for key in sorted((set(rendered) | set(live)) - INJECTED_KEYS):
        r, lv = rendered.get(key), live.get(key)
        if r is None:
            changes.append(Change(name, key, "removed", None, mask_value(key, lv)))
        elif lv is None:
            changes.append(Change(name, key, "added", mask_value(key, r), None))
        elif not _same(str(r), str(lv)):
            changes.append(Change(name, key, "changed", mask_value(key, r), mask_value(key, lv)))
    return changes
