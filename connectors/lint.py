"""Debezium-aware lint rules for rendered connector configs.

Each rule returns findings; `error` findings fail `lint` (and `scripts/register_connectors`),
`warning` findings are printed. A rule can be allowed on purpose with `--allow RULE`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass

from connectors.secrets import URI_USERINFO, is_provider_ref, is_secret_key
from fresh.errors import FreshError

DEBEZIUM_PREFIX = "io.debezium.connector."
RISKY_SNAPSHOT_MODES = {
    "never": "skips the initial snapshot: documents that exist before the connector starts never reach Kafka",
    "no_data": "skips the initial snapshot: documents that exist before the connector starts never reach Kafka",
    "always": "re-reads every collection on each restart, flooding the CDC topics with duplicates",
    "recovery": "rebuilds the history from scratch: meant for one-off recovery, not a standing config",
    "when_needed": "silently re-snapshots when offsets are missing; choose it explicitly per incident",
}


class LintFailedError(FreshError):
    """At least one lint rule reported an error."""


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str  # "error" or "warning"
    connector: str
    key: str
    message: str

    def row(self) -> dict[str, str]:
        return asdict(self)


Config = Mapping[str, str]
Rule = Callable[[str, Config, Mapping[str, Config]], list[Finding]]


def _is_debezium(config: Config) -> bool:
    return str(config.get("connector.class", "")).startswith(DEBEZIUM_PREFIX)


def heartbeat_off(name: str, config: Config, live: Mapping[str, Config]) -> list[Finding]:
    if not _is_debezium(config):
        return []
    value = str(config.get("heartbeat.interval.ms", "0")).strip()
    if value.isdigit() and int(value) > 0:
        return []
    return [Finding("heartbeat-off", "warning", name, "heartbeat.interval.ms",
                    "heartbeats are off: on quiet collections the stored resume token ages out of the oplog "
                    "and the connector needs a new snapshot; set heartbeat.interval.ms (e.g. 10000)")]


def unanchored_include_list(name: str, config: Config, live: Mapping[str, Config]) -> list[Finding]:
    if not _is_debezium(config):
        return []
    out = []
    for key in ("collection.include.list", "database.include.list", "collection.exclude.list"):
        raw = config.get(key)
        if not raw or key == "database.include.list":
            continue
        for pattern in (p.strip() for p in str(raw).split(",") if p.strip()):
            if not (pattern.startswith("^") and pattern.endswith("$")):
                out.append(Finding("unanchored-include-list", "warning", name, key,
                                   f"pattern {pattern!r} is not anchored: it also matches collections whose names "
                                   "merely contain it; write it as ^db\\.collection$"))
    return out


def risky_snapshot_mode(name: str, config: Config, live: Mapping[str, Config]) -> list[Finding]:
    if not _is_debezium(config):
        return []
    mode = str(config.get("snapshot.mode", "initial")).strip().lower()
    if mode in RISKY_SNAPSHOT_MODES:
        return [Finding("risky-snapshot-mode", "warning", name, "snapshot.mode",
                        f"snapshot.mode={mode} {RISKY_SNAPSHOT_MODES[mode]}; the pipeline expects 'initial'")]
    return []


def plaintext_secret(name: str, config: Config, live: Mapping[str, Config]) -> list[Finding]:
    out = []
    for key, value in config.items():
        if value is None or is_provider_ref(value):
            continue
        # The value itself is never echoed: the finding names the key only.
        if is_secret_key(key) and str(value).strip():
            out.append(Finding("plaintext-secret", "error", name, key,
                               "holds a plaintext value; use a config-provider reference such as "
                               "${env:VAR} or ${file:/path/secrets.properties:key}"))
        elif URI_USERINFO.search(str(value)):
            out.append(Finding("plaintext-secret", "error", name, key,
                               "holds a URI with credentials; use a config-provider reference"))
    return out


def offset_reset(name: str, config: Config, live: Mapping[str, Config]) -> list[Finding]:
    """A changed topic.prefix (same name) or a changed name (same prefix) starts Debezium over."""
    if not _is_debezium(config) or not live:
        return []
    prefix = config.get("topic.prefix")
    current = live.get(name)
    if current is not None:
        if current.get("topic.prefix") != prefix:
            return [Finding("offset-reset", "error", name, "topic.prefix",
                            f"topic.prefix changes from {current.get('topic.prefix')!r} to {prefix!r}: the stored "
                            "offsets no longer apply, Debezium re-snapshots into new topics; "
                            "pass --allow offset-reset if this is intended")]
        return []
    for other, other_config in live.items():
        if (other != name and other_config.get("connector.class") == config.get("connector.class")
                and other_config.get("topic.prefix") == prefix):
            return [Finding("offset-reset", "error", name, "name",
                            f"live connector {other!r} already captures topic.prefix {prefix!r}: renaming it to "
                            f"{name!r} drops its offsets and re-snapshots; pass --allow offset-reset if intended")]
    return []


RULES: dict[str, Rule] = {
    "heartbeat-off": heartbeat_off,
    "unanchored-include-list": unanchored_include_list,
    "risky-snapshot-mode": risky_snapshot_mode,
    "plaintext-secret": plaintext_secret,
    "offset-reset": offset_reset,
}


def lint(
    configs: Mapping[str, Config],
    live: Mapping[str, Config] | None = None,
    allow: Iterable[str] = (),
) -> list[Finding]:
    """Run every rule not in `allow` over `{name: config}`; `live` holds the worker's configs."""
    allowed = set(allow)
    unknown = allowed - set(RULES)
    if unknown:
        raise LintFailedError(f"unknown lint rule(s) {', '.join(sorted(unknown))}; known: {', '.join(RULES)}")
    findings = []
    for name, config in configs.items():
        for rule_id, rule in RULES.items():
            if rule_id not in allowed:
                findings.extend(rule(name, config, live or {}))
    return findings


def raise_on_errors(findings: list[Finding]) -> None:
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        first = errors[0]
        raise LintFailedError(
            f"lint: {len(errors)} error(s); first: {first.connector} {first.key}: [{first.rule}] {first.message}"
        )
