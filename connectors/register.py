"""The operator's one workflow: render -> lint -> validate -> apply -> wait.

`freshctl connectors register`, `scripts/register_connectors` and `freshctl up` all call
`register`; progress lines go to a callback so a CLI can print them and a library caller can log them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from connectors import lint as lint_mod
from connectors import validate as validate_mod
from connectors.apply import ApplyResult, apply, ensure_local_secret, reached
from connectors.connect_api import ConnectApi
from connectors.diff import diff_config
from connectors.render import Rendered, RenderedConnector
from fresh.settings import Settings

Progress = Callable[[str], None]


def live_configs(api: ConnectApi) -> dict[str, dict[str, str]]:
    """The live config of every connector on the worker."""
    return {name: entry.get("info", {}).get("config", {}) for name, entry in api.list_with_status().items()}


def _in_place(api: ConnectApi, connector: RenderedConnector) -> bool:
    live = api.get_config(connector.name)
    return live is not None and not diff_config(connector.name, connector.config, live) \
        and reached(api, connector.name, connector.state)


def register(
    api: ConnectApi,
    rendered: Rendered,
    settings: Settings,
    *,
    allow: tuple[str, ...] = (),
    dry_run: bool = False,
    prune: bool = False,
    wait: bool = True,
    timeout_s: float = 60.0,
    skip_unchanged: bool = False,
    progress: Progress = lambda _line: None,
) -> list[ApplyResult]:
    """Lint (errors stop here), validate on the worker (errors stop here), then apply and wait.

    Raises the lint or validation error after reporting each finding through `progress`. With
    `skip_unchanged`, connectors that are live with exactly the rendered config and already in
    their desired state are left alone, unvalidated (`freshctl up` run again: Debezium's
    validation connects to MongoDB and can take a minute on a busy machine).
    """
    api.server_info()  # an unreachable worker or a server that is not Connect fails here, in one line
    progress(f"rendered {len(rendered.connectors)} connector(s) for {rendered.environment}")
    if skip_unchanged and not prune and all(_in_place(api, c) for c in rendered.connectors):
        progress("live connectors already match the rendered configs and states")
        return [ApplyResult(c.name, "unchanged", c.state) for c in rendered.connectors]
    findings = lint_mod.lint({c.name: c.config for c in rendered.connectors}, live_configs(api), allow)
    for f in findings:
        progress(f"lint {f.severity}: {f.connector} {f.key}: [{f.rule}] {f.message}")
    lint_mod.raise_on_errors(findings)
    errors = []
    for connector in rendered.connectors:
        if dry_run:  # a dry run writes nothing, not even the local worker's secret file
            secret = connector.local_secret_file
            if secret and not Path(secret["path"]).is_file():
                progress(f"dry run: not validating {connector.name}: its local secret file "
                         f"{secret['path']} is written by a real run")
                continue
        else:
            ensure_local_secret(connector, settings)  # the worker's secret file, not a Connect change
        errors.extend(validate_mod.validate_config(api, connector.name, connector.config))
    for e in errors:
        progress(f"invalid: {e.connector} {e.field}: {e.error}")
    validate_mod.raise_on_errors(errors)
    progress("lint and validate passed; applying")
    return apply(api, rendered, settings, dry_run=dry_run, prune=prune, wait=wait, timeout_s=timeout_s)
