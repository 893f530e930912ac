"""Apply rendered connectors: idempotent `PUT /connectors/{name}/config`, the desired state
(RUNNING, PAUSED, STOPPED) awaited with a deadline, and an optional prune limited to the
connectors this code manages (names starting with the values' `managed_prefix`)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from connectors.connect_api import ConnectApi, ConnectNotFoundError, ConnectUnreachableError
from connectors.diff import diff_config
from connectors.render import Rendered, RenderedConnector
from connectors.secrets import write_properties_secret
from fresh.clients import mongo_connection_uri
from fresh.errors import FreshError
from fresh.settings import Settings
from fresh.wait import wait_until

log = logging.getLogger(__name__)


class ConnectorFailedError(FreshError):
    """A connector or one of its tasks is FAILED."""


class PruneScopeError(FreshError):
    """--prune was asked for without a managed name prefix to limit it."""


@dataclass
class ApplyResult:
    connector: str
    action: str  # created, updated, unchanged, deleted (prefixed "would " on --dry-run)
    state: str
    changes: int = 0

    def row(self) -> dict[str, Any]:
        return asdict(self)


def ensure_local_secret(connector: RenderedConnector, settings: Settings) -> None:
    """Write the provider file the local worker resolves (only when the values ask for one)."""
    spec = connector.local_secret_file
    if not spec:
        return
    # The one URI builder: FRESH_MONGO_URI plus the FRESH_MONGO_TLS* options. The Java driver ignores
    # tlsCAFile (with a warning); Debezium trusts a private CA through the worker JVM's trust store.
    uri = mongo_connection_uri(settings).get_secret_value()
    changed = write_properties_secret(Path(spec["path"]), spec["key"], uri)
    log.info("local secret file connector=%s path=%s changed=%s", connector.name, spec["path"], changed)


def task_trace(status: dict[str, Any]) -> str:
    for task in [status.get("connector", {}), *status.get("tasks", [])]:
        if task.get("state") == "FAILED":
            return str(task.get("trace") or "").strip()
    return ""


def reached(api: ConnectApi, name: str, desired: str) -> bool:
    """True once the connector and its tasks are in `desired`; FAILED raises at once."""
    try:
        status = api.get_status(name)
    except ConnectNotFoundError:
        return False  # just created: the status topic has not caught up yet
    state = status.get("connector", {}).get("state")
    tasks = [t.get("state") for t in status.get("tasks", [])]
    if state == "FAILED" or "FAILED" in tasks:
        first_line = task_trace(status).splitlines()[:1]
        raise ConnectorFailedError(
            f"connector {name} is FAILED while waiting for {desired}: "
            f"{first_line[0] if first_line else 'no trace'}; see `freshctl connectors describe {name}`"
        )
    if state != desired:
        return False
    if desired == "RUNNING":
        return bool(tasks) and all(t == "RUNNING" for t in tasks)
    if desired == "STOPPED":
        return not tasks
    return all(t == desired for t in tasks)


def wait_for_state(api: ConnectApi, name: str, desired: str, timeout_s: float) -> None:
    wait_until(
        lambda: reached(api, name, desired), timeout_s=timeout_s, what=f"connector {name} to be {desired}",
        fatal=(ConnectorFailedError, ConnectUnreachableError),
    )


def _set_state(api: ConnectApi, name: str, desired: str) -> None:
    try:
        current = api.get_status(name).get("connector", {}).get("state")
    except ConnectNotFoundError:
        current = None
    if desired == "PAUSED" and current != "PAUSED":
        api.pause(name)
    elif desired == "STOPPED" and current != "STOPPED":
        api.stop(name)
    elif desired == "RUNNING" and current in ("PAUSED", "STOPPED"):
        api.resume(name)


def apply_connector(
    api: ConnectApi, connector: RenderedConnector, settings: Settings, *, dry_run: bool, wait: bool, timeout_s: float
) -> ApplyResult:
    live = api.get_config(connector.name)
    changes = diff_config(connector.name, connector.config, live)
    action = "created" if live is None else ("updated" if changes else "unchanged")
    if dry_run:
        return ApplyResult(connector.name, action if action == "unchanged" else f"would be {action}",
                           connector.state, len(changes) if live is not None else 0)
    ensure_local_secret(connector, settings)
    if action != "unchanged":
        api.put_config(connector.name, connector.config)
        log.info("applied connector=%s action=%s changes=%d", connector.name, action, len(changes))
    _set_state(api, connector.name, connector.state)
    if wait:
        wait_for_state(api, connector.name, connector.state, timeout_s)
    return ApplyResult(connector.name, action, connector.state, len(changes) if live is not None else 0)


def prune_candidates(api: ConnectApi, rendered: Rendered) -> list[str]:
    if not rendered.managed_prefix:
        raise PruneScopeError(
            "--prune needs `managed_prefix` in the values: without it every connector on the worker would be "
            "a candidate, including other people's; set managed_prefix (e.g. 'probablyfresh-')"
        )
    wanted = set(rendered.by_name())
    return [n for n in api.list_connectors() if n.startswith(rendered.managed_prefix) and n not in wanted]


def delete_connector(api: ConnectApi, name: str, timeout_s: float) -> None:
    api.delete(name)
    wait_until(lambda: api.get_config(name) is None, timeout_s=timeout_s, what=f"connector {name} to be deleted")


def apply(
    api: ConnectApi,
    rendered: Rendered,
    settings: Settings,
    *,
    dry_run: bool = False,
    prune: bool = False,
    wait: bool = True,
    timeout_s: float = 60.0,
) -> list[ApplyResult]:
    results = [
        apply_connector(api, c, settings, dry_run=dry_run, wait=wait, timeout_s=timeout_s)
        for c in rendered.connectors
    ]
    if prune:
        for name in prune_candidates(api, rendered):
            if dry_run:
                results.append(ApplyResult(name, "would be deleted", "-"))
                continue
            delete_connector(api, name, timeout_s)
            log.info("pruned connector=%s", name)
            results.append(ApplyResult(name, "deleted", "-"))
    return results
