"""`freshctl completion SHELL`: the shell completion script (click's, bound to freshctl)."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

SHELLS = ("bash", "zsh", "fish")


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script for bash, zsh or fish.

    Completes commands, options, environments, entities, services and live connector names.

    \b
    Examples:
      eval "$(freshctl completion bash)"                        # this shell; add it to ~/.bashrc
      freshctl completion zsh > "${fpath[1]}/_freshctl"          # zsh
      freshctl completion fish > ~/.config/fish/completions/freshctl.fish
    """
    root = ctx.find_root().command
    cls = get_completion_class(shell)
    if cls is None:  # pragma: no cover - SHELLS are click's built-in shells
        raise click.UsageError(f"no completion for {shell}")
    click.echo(cls(root, {}, "freshctl", "_FRESHCTL_COMPLETE").source())
