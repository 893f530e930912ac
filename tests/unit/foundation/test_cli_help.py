"""Every freshctl command has help text with an example, and help exits 0."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from freshctl.cli import freshctl
from freshctl.tree import walk

COMMANDS = walk(freshctl)


def test_top_level_help_lists_the_command_groups() -> None:
    result = CliRunner().invoke(freshctl, ["--help"])
    assert result.exit_code == 0
    for group in ("stack", "config"):
        assert f"  {group} " in result.output


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_command_has_help_with_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(freshctl, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output, f"`freshctl {' '.join(path)} --help` shows no example"
