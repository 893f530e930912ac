"""The operator's one workflow: render -> lint -> validate -> apply -> wait.

`freshctl connectors register`, `scripts/register_connectors` and `freshctl up` all call
`register`; progress lines go to a callback so a CLI can print them and a library caller can log them.
"""

from __future__ import annotations

from collections.abc import Callable

from connectors import lint as lint_mod
from connectors import validate as validate_mod
from connectors.apply import ApplyResult, apply, ensure_local_secret
from connectors.connect_api import ConnectApi
from connectors.render import Rendered
from fresh.settings import Settings

Progress = Callable[[str], None]


def live_configs(api: ConnectApi) -> dict[str, dict[str, str]]:
    """The live config of every connector on the worker."""
    return {name: entry.get("info", {}).get("config", {}) for name, entry in api.list_with_status().items()}


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
    progress: Progress = lambda _line: None,
) -> list[ApplyResult]:
    """Lint (errors stop here), validate on the worker (errors stop here), then apply and wait.

    Raises the lint or validation error after reporting each finding through `progress`.
    """
    progress(f"rendered {len(rendered.connectors)} connector(s) for {rendered.environment}")
    findings = lint_mod.lint({c.name: c.config for c in rendered.connectors}, live_configs(api), allow)
    for f in findings:
        progress(f"lint {f.severity}: {f.connector} {f.key}: [{f.rule}] {f.message}")
    lint_mod.raise_on_errors(findings)
    errors = []
    for connector in rendered.connectors:
        ensure_local_secret(connector, settings)  # the worker's secret file, not a Connect change
        errors.extend(validate_mod.validate_config(api, connector.name, connector.config))
    for e in errors:
        progress(f"invalid: {e.connector} {e.field}: {e.error}")
    validate_mod.raise_on_errors(errors)
    progress("lint and validate passed; applying")
    return apply(api, rendered, settings, dry_run=dry_run, prune=prune, wait=wait, timeout_s=timeout_s)
