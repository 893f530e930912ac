"""The whole command tree, for the tests that check every command and for docs/cli.md."""

from __future__ import annotations

import click


def walk(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    """Every visible command under `group` (groups included), depth first, imported (lazy groups loaded)."""
    ctx = click.Context(group)
    found: list[tuple[tuple[str, ...], click.Command]] = []
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if cmd is None or cmd.hidden:  # hidden: former names kept for scripts
            continue
        path = (*prefix, name)
        found.append((path, cmd))
        if isinstance(cmd, click.Group):
            found.extend(walk(cmd, path))
    return found


def leaves(group: click.Group) -> dict[str, click.Command]:
    """`"connectors apply" -> command` for every command that runs something (not a group)."""
    return {" ".join(path): cmd for path, cmd in walk(group) if not isinstance(cmd, click.Group)}
