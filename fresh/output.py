"""Print listings as a table or as JSON (`--output table|json` on every listing and report),
and the options every command shares the same way (docs/cli.md)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import click

from fresh import progress


def _output_chosen(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    progress.set_quiet(value == "json")  # JSON on stdout: no progress lines on stderr either
    return value


OUTPUT_OPTION = click.option(
    "--output", "-o", type=click.Choice(["table", "json"]), default="table", show_default=True,
    callback=_output_chosen, help="Output format.",
)

# Every verb that waits for a state offers both spellings; the default is to wait.
WAIT_OPTION = click.option("--wait/--no-wait", default=True, show_default=True,
                           help="Wait for the resulting state (with --timeout).")


def print_rows(rows: Sequence[Mapping[str, Any]], output: str, columns: Sequence[str] | None = None) -> None:
    if output == "json":
        click.echo(json.dumps(list(rows), indent=2, default=str))
        return
    if not rows:
        click.echo("(none)")
        return
    cols = list(columns or rows[0].keys())
    cells = [[("" if row.get(c) is None else str(row.get(c))) for c in cols] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip())
    for r in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
