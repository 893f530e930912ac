"""`freshctl connectors`: parse, call the library, print. Nothing worth testing lives here."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.shell_completion import CompletionItem

from connectors.lint import RULES as LINT_RULES
from fresh.output import OUTPUT_OPTION, WAIT_OPTION, print_rows

if TYPE_CHECKING:
    from connectors.connect_api import ConnectApi
    from connectors.render import Rendered
    from fresh.settings import Settings

# The library is imported inside each command, not here: a TAB in `freshctl connectors ...`
# loads this module, and must not pay for requests, jinja2 and pydantic (docs/benchmarks.md).
F = Callable[..., Any]
VALUES_DIR = Path(__file__).resolve().parent / "values"
ENVIRONMENTS = sorted(p.stem for p in VALUES_DIR.glob("*.yaml") if p.stem != "base")  # = render.known_environments


def complete_connectors(_ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Live connector names (a short timeout), else the names the default environment renders."""
    try:
        from connectors.connect_api import ConnectApi
        from fresh.errors import FreshError
        from fresh.settings import load_settings

        settings = load_settings()
        try:
            names = ConnectApi.from_settings(settings, timeout_s=0.5).list_connectors()
        except FreshError:
            names = [c.name for c in _render(settings, None, (), ()).connectors]
    except Exception:  # completion must never fail the shell
        return []
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


def render_options(func: F) -> F:
    func = click.option("--only", multiple=True, metavar="NAME", shell_complete=complete_connectors,
                        help="Only this connector (name or values key); repeatable.")(func)
    func = click.option("--values", "-f", "values_files", multiple=True, type=click.Path(exists=True, path_type=Path),
                        help="Extra values file merged over the environment's; repeatable, later wins.")(func)
    func = click.option("--environment", "-e", default=None, type=click.Choice(ENVIRONMENTS),
                        help="Values environment (one values file each in connectors/values/); "
                             "default: FRESH_ENVIRONMENT.")(func)
    return func


NAME_ARGUMENT = click.argument("name", shell_complete=complete_connectors)


def _render(
    settings: Settings, environment: str | None, values_files: tuple[Path, ...], only: tuple[str, ...]
) -> Rendered:
    from connectors.render import render
    from fresh.pipeline import load_pipeline_config

    pipeline = load_pipeline_config(settings.pipeline_config)
    return render(pipeline, settings, environment or settings.environment, extra_values=values_files, only=only)


def _api(settings: Settings) -> ConnectApi:
    from connectors.connect_api import ConnectApi

    return ConnectApi.from_settings(settings)


@click.group()
def connectors() -> None:
    """Debezium connectors as code: render, lint, validate, diff, apply, inspect.

    \b
    Examples:
      freshctl connectors render -e local
      freshctl connectors diff -e local          # exit 3 when live differs
      freshctl connectors apply -e local --dry-run
      freshctl connectors status probablyfresh-mongodb-source
    """


@connectors.command("render")
@render_options
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), help="Write one JSON file per connector.")
@click.pass_obj
def render_cmd(settings: Settings, environment: str | None, values_files: tuple[Path, ...], only: tuple[str, ...],
               out_dir: Path | None) -> None:
    """Render connector configs to stdout (one JSON array of {name, config}) or a folder (one
    file per connector). Secrets stay provider references. An environment renders from its own
    values only (local from the local stack's FRESH_* ports).

    \b
    Examples:
      freshctl connectors render -e prod
      freshctl connectors render -e local --out-dir out/connectors
    """
    from connectors.render import to_json, write_folder

    rendered = _render(settings, environment, values_files, only)
    if out_dir:
        for path in write_folder(rendered, out_dir):
            click.echo(str(path))
        return
    click.echo(json.dumps([json.loads(to_json(c)) for c in rendered.connectors], indent=2, sort_keys=True))


@connectors.command("lint")
@render_options
@click.option("--allow", multiple=True, type=click.Choice(list(LINT_RULES)), help="Skip a rule on purpose.")
@click.option("--offline", is_flag=True, help="Do not read live configs (skips the offset-reset comparison).")
@OUTPUT_OPTION
@click.pass_obj
def lint_cmd(settings: Settings, environment: str | None, values_files: tuple[Path, ...], only: tuple[str, ...],
             allow: tuple[str, ...], offline: bool, output: str) -> None:
    """Debezium-aware lint: heartbeat off, unanchored include lists, risky snapshot modes, plaintext
    secrets, a topic.prefix or name change that would reset offsets. Exit 1 on an error finding.

    \b
    Examples:
      freshctl connectors lint -e prod --offline
      freshctl connectors lint -e local --allow offset-reset
    """
    from connectors import lint as lint_mod
    from connectors.register import live_configs

    rendered = _render(settings, environment, values_files, only)
    live = {} if offline else live_configs(_api(settings))
    findings = lint_mod.lint({c.name: c.config for c in rendered.connectors}, live, allow)
    print_rows([f.row() for f in findings], output, ["rule", "severity", "connector", "key", "message"])
    lint_mod.raise_on_errors(findings)


@connectors.command("validate")
@render_options
@OUTPUT_OPTION
@click.pass_obj
def validate_cmd(settings: Settings, environment: str | None, values_files: tuple[Path, ...], only: tuple[str, ...],
                 output: str) -> None:
    """Ask Connect to validate each rendered config; print errors per field (exit 1 if any).

    \b
    Examples:
      freshctl connectors validate -e local
      freshctl connectors validate -e local -o json
    """
    from connectors import validate as validate_mod
    from connectors.apply import ensure_local_secret

    rendered = _render(settings, environment, values_files, only)
    api = _api(settings)
    errors = []
    for connector in rendered.connectors:
        ensure_local_secret(connector, settings)
        errors.extend(validate_mod.validate_config(api, connector.name, connector.config))
    if output == "json" or errors:
        print_rows([e.row() for e in errors], output, ["connector", "field", "error"])
    else:
        click.echo(f"{len(rendered.connectors)} connector(s) valid")
    validate_mod.raise_on_errors(errors)


@connectors.command("diff")
@render_options
@OUTPUT_OPTION
@click.pass_obj
def diff_cmd(settings: Settings, environment: str | None, values_files: tuple[Path, ...], only: tuple[str, ...],
             output: str) -> None:
    """Rendered against live. Keys Connect injects and masked provider references are not drift.
    Exit 3 on drift, 0 on none.

    \b
    Examples:
      freshctl connectors diff -e local
      freshctl connectors diff -e prod -o json
    """
    from connectors.diff import DriftError, diff_config

    rendered = _render(settings, environment, values_files, only)
    api = _api(settings)
    changes = []
    for connector in rendered.connectors:
        changes.extend(diff_config(connector.name, connector.config, api.get_config(connector.name)))
    if output == "json" or changes:
        print_rows([c.row() for c in changes], output, ["connector", "key", "change", "rendered", "live"])
    else:
        click.echo("no drift")
    if changes:
        raise DriftError(f"{len(changes)} difference(s) between rendered and live connectors; "
                         "run `freshctl connectors apply` to converge")


def _apply_options(func: F) -> F:
    func = click.option("--timeout", "timeout_s", default=60.0, show_default=True,
                        help="Seconds to wait for each connector's desired state.")(func)
    func = WAIT_OPTION(func)
    func = click.option("--prune", is_flag=True,
                        help="Delete live connectors named with the values' managed_prefix that are "
                             "no longer rendered.")(func)
    func = click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")(func)
    return func


@connectors.command("apply")
@render_options
@_apply_options
@OUTPUT_OPTION
@click.pass_obj
def apply_cmd(settings: Settings, environment: str | None, values_files: tuple[Path, ...], only: tuple[str, ...],
              dry_run: bool, prune: bool, wait: bool, timeout_s: float, output: str) -> None:
    """Idempotent PUT of each rendered config, then wait for its state (RUNNING, PAUSED or STOPPED).

    \b
    Examples:
      freshctl connectors apply -e local --dry-run
      freshctl connectors apply -e local --prune --timeout 120
    """
    from connectors.apply import apply as apply_connectors

    rendered = _render(settings, environment, values_files, only)
    results = apply_connectors(_api(settings), rendered, settings, dry_run=dry_run, prune=prune,
                               wait=wait, timeout_s=timeout_s)
    print_rows([r.row() for r in results], output)


@connectors.command("register")
@render_options
@_apply_options
@click.option("--allow", multiple=True, type=click.Choice(list(LINT_RULES)), help="Lint rule to skip on purpose.")
@OUTPUT_OPTION
@click.pass_obj
def register_cmd(settings: Settings, environment: str | None, values_files: tuple[Path, ...], only: tuple[str, ...],
                 dry_run: bool, prune: bool, wait: bool, timeout_s: float, allow: tuple[str, ...],
                 output: str) -> None:
    """Render, lint, validate, apply and wait: the one command an operator runs
    (scripts/register_connectors calls this).

    \b
    Examples:
      scripts/register_connectors -e local
      scripts/register_connectors -e prod --dry-run
    """
    from connectors.register import register

    rendered = _render(settings, environment, values_files, only)
    results = register(_api(settings), rendered, settings, allow=allow, dry_run=dry_run, prune=prune,
                       wait=wait, timeout_s=timeout_s, progress=lambda line: click.echo(line, err=True))
    print_rows([r.row() for r in results], output)


@connectors.command("get")
@click.option("--prefix", default="", help="Only connectors whose name starts with this.")
@OUTPUT_OPTION
@click.pass_obj
def get_cmd(settings: Settings, prefix: str, output: str) -> None:
    """List live connectors with their class, state and tasks.

    \b
    Examples:
      freshctl connectors get
      freshctl connectors get --prefix probablyfresh- -o json
    """
    from connectors import status as status_mod

    print_rows(status_mod.list_rows(_api(settings), prefix), output, ["name", "class", "type", "state", "tasks"])


@connectors.command("status")
@NAME_ARGUMENT
@OUTPUT_OPTION
@click.pass_obj
def status_cmd(settings: Settings, name: str, output: str) -> None:
    """Connector and task states; a failed one shows the first line of its trace.

    \b
    Example:
      freshctl connectors status probablyfresh-mongodb-source
    """
    from connectors import status as status_mod

    print_rows(status_mod.status_rows(_api(settings), name), output)


@connectors.command("describe")
@NAME_ARGUMENT
@OUTPUT_OPTION
@click.pass_obj
def describe_cmd(settings: Settings, name: str, output: str) -> None:
    """Config (secrets masked), state, tasks and full traces of failed tasks.

    \b
    Example:
      freshctl connectors describe probablyfresh-mongodb-source -o json
    """
    from connectors import status as status_mod

    info = status_mod.describe(_api(settings), name)
    if output == "json":
        click.echo(json.dumps(info, indent=2, sort_keys=True))
        return
    click.echo(f"Name:   {info['name']}\nType:   {info['type']}\nState:  {info['state']}\nWorker: {info['worker']}")
    if info["trace"]:
        click.echo(f"Trace:\n{info['trace']}")
    click.echo("Tasks:")
    for task in info["tasks"]:
        click.echo(f"  {task['id']}: {task['state']} on {task['worker']}")
        if task["trace"]:
            click.echo("    " + task["trace"].replace("\n", "\n    "))
    click.echo("Config:")
    for key, value in sorted(info["config"].items()):
        click.echo(f"  {key} = {value}")


def _write_verb(verb: str, doc: str) -> None:
    def command(settings: Settings, name: str, dry_run: bool, wait: bool, timeout_s: float, output: str,
                all_tasks: bool = False) -> None:
        from connectors.apply import delete_connector, wait_for_state

        api = _api(settings)
        api.get_status(name)  # a clear "no such connector" before anything else
        if dry_run:
            print_rows([{"connector": name, "action": f"would {verb}"}], output)
            return
        if verb == "delete":
            if wait:
                delete_connector(api, name, timeout_s)
            else:
                api.delete(name)
        elif verb == "restart":
            api.restart(name, include_tasks=True, only_failed=not all_tasks)
            if wait:
                wait_for_state(api, name, "RUNNING", timeout_s)
        else:
            getattr(api, verb)(name)
            target = {"pause": "PAUSED", "resume": "RUNNING", "stop": "STOPPED"}[verb]
            if wait:
                wait_for_state(api, name, target, timeout_s)
        print_rows([{"connector": name, "action": verb}], output)

    if verb == "restart":  # options only where they act
        command = click.option("--all-tasks", is_flag=True, help="Restart every task, not just failed ones.")(command)
    command = click.option("--timeout", "timeout_s", default=60.0, show_default=True, help="Seconds to wait.")(command)
    command = OUTPUT_OPTION(command)
    command = WAIT_OPTION(command)
    command = click.option("--dry-run", is_flag=True, help="Print what would be done; do nothing.")(command)
    command = NAME_ARGUMENT(command)
    connectors.command(verb, help=doc)(click.pass_obj(command))


for _verb, _doc in {
    "restart": "Restart a connector's failed tasks (--all-tasks: every task), then wait for RUNNING.\n\n"
               "\b\nExamples:\n  freshctl connectors restart probablyfresh-mongodb-source\n"
               "  freshctl connectors restart probablyfresh-mongodb-source --all-tasks",
    "pause": "Pause a connector and wait for PAUSED.\n\n\b\nExample:\n  freshctl connectors pause NAME --dry-run",
    "resume": "Resume a paused or stopped connector and wait for RUNNING.\n\n\b\nExample:\n"
              "  freshctl connectors resume NAME",
    "stop": "Stop a connector (no tasks, offsets kept) and wait for STOPPED.\n\n\b\nExample:\n"
            "  freshctl connectors stop NAME",
    "delete": "Delete a connector (its offsets stay in Connect's offsets topic).\n\n\b\nExample:\n"
              "  freshctl connectors delete NAME --dry-run",
}.items():
    _write_verb(_verb, _doc)


@connectors.command("offsets")
@NAME_ARGUMENT
@OUTPUT_OPTION
@click.pass_obj
def offsets_cmd(settings: Settings, name: str, output: str) -> None:
    """Read a connector's committed source offsets (read only).

    \b
    Example:
      freshctl connectors offsets probablyfresh-mongodb-source -o json
    """
    from connectors import status as status_mod

    print_rows(status_mod.offset_rows(_api(settings), name), output)
