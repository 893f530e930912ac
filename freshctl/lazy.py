"""A click group whose subcommands are imported on first use, so `freshctl --help` and a TAB
do not pay for importing every part (Kafka, ClickHouse, MongoDB drivers)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, NamedTuple

import click
from click.shell_completion import CompletionItem

REMAINING_ARGS = "freshctl.remaining_args"


class LazyCommand(NamedTuple):
    target: str  # "module:attribute" of the click command
    short_help: str  # shown by `freshctl --help` without importing the module (a test keeps it in sync)


class LazyGroup(click.Group):
    def __init__(self, *args: Any, lazy: Mapping[str, LazyCommand], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            self.add_command(load(self.lazy[cmd_name]), cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        # click clears the arguments before the group's callback runs; keep them for it to see
        # (the root skips loading settings for `... --help`).
        ctx.meta[REMAINING_ARGS] = (*ctx._protected_args, *ctx.args)
        return super().invoke(ctx)

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        """Subcommand names with their one-line help, without importing the lazy ones (a TAB)."""
        results = []
        for name in self.list_commands(ctx):
            if not name.startswith(incomplete):
                continue
            if name in self.commands:
                if not self.commands[name].hidden:
                    results.append(CompletionItem(name, help=self.commands[name].get_short_help_str()))
            else:
                results.append(CompletionItem(name, help=self.lazy[name].short_help))
        results.extend(click.Command.shell_complete(self, ctx, incomplete))  # the group's own options
        return results

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in self.commands:
                if self.commands[name].hidden:
                    continue
                rows.append((name, self.commands[name].get_short_help_str(formatter.width)))
            else:
                rows.append((name, self.lazy[name].short_help))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def load(entry: LazyCommand) -> click.Command:
    module, _, attribute = entry.target.partition(":")
    command = getattr(importlib.import_module(module), attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{entry.target} is not a click command")
    return command
