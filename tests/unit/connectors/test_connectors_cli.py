"""Every connectors verb has help with an example; the group is registered in freshctl."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from connectors.cli import connectors
from freshctl.cli import freshctl

VERBS = sorted(connectors.commands)


def test_group_is_registered() -> None:
    assert freshctl.commands["connectors"] is connectors
    assert {"render", "lint", "validate", "diff", "apply", "register", "get", "describe", "status", "restart",
            "pause", "resume", "stop", "delete", "offsets"} <= set(VERBS)


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help_with_example(verb: str) -> None:
    result = CliRunner().invoke(freshctl, ["connectors", verb, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output
    assert "freshctl connectors" in result.output or "register_connectors" in result.output


@pytest.mark.parametrize("verb", ["apply", "register", "restart", "pause", "resume", "stop", "delete"])
def test_writes_have_dry_run(verb: str) -> None:
    assert "--dry-run" in CliRunner().invoke(freshctl, ["connectors", verb, "--help"]).output
