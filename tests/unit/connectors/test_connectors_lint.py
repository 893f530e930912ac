"""Every lint rule has a failing and a passing case."""

from __future__ import annotations

import pytest

from connectors.lint import RULES, LintFailedError, lint, raise_on_errors
from connectors.render import render
from fresh.pipeline import PipelineConfig
from fresh.settings import Settings

GOOD = {
    "connector.class": "io.debezium.connector.mongodb.MongoDbConnector",
    "topic.prefix": "cdc",
    "heartbeat.interval.ms": "10000",
    "collection.include.list": r"^db\.stores$,^db\.products$",
    "snapshot.mode": "initial",
    "mongodb.connection.string": "${env:FRESH_MONGO_CONNECTION_STRING}",
}

# rule -> (a config change that trips it, live configs), passing case is GOOD with the same live configs
CASES: dict[str, tuple[dict[str, str], dict[str, dict[str, str]]]] = {
    "heartbeat-off": ({"heartbeat.interval.ms": "0"}, {}),
    "unanchored-include-list": ({"collection.include.list": r"db\.stores,^db\.products$"}, {}),
    "risky-snapshot-mode": ({"snapshot.mode": "no_data"}, {}),
    "plaintext-secret": ({"mongodb.connection.string": "mongodb://u:pw@h:27017"}, {}),
    "offset-reset": ({"topic.prefix": "cdc2"}, {"src": dict(GOOD)}),
}


def test_every_rule_has_a_case() -> None:
    assert set(CASES) == set(RULES)


@pytest.mark.parametrize("rule", sorted(CASES))
def test_rule_fails(rule: str) -> None:
    change, live = CASES[rule]
    findings = lint({"src": {**GOOD, **change}}, live)
    assert [f.rule for f in findings] == [rule]


@pytest.mark.parametrize("rule", sorted(CASES))
def test_rule_passes(rule: str) -> None:
    _, live = CASES[rule]
    assert lint({"src": dict(GOOD)}, live) == []


def test_heartbeat_missing_counts_as_off() -> None:
    config = {k: v for k, v in GOOD.items() if k != "heartbeat.interval.ms"}
    assert [f.rule for f in lint({"src": config})] == ["heartbeat-off"]


def test_rename_resets_offsets() -> None:
    findings = lint({"renamed": dict(GOOD)}, {"src": dict(GOOD)})
    assert [(f.rule, f.key) for f in findings] == [("offset-reset", "name")]


def test_plaintext_secret_finding_never_echoes_the_value() -> None:
    findings = lint({"src": {**GOOD, "mongodb.connection.string": "mongodb://u:hunter2pw@h"}})
    assert findings and all("hunter2pw" not in str(f) for f in findings)


def test_plaintext_password_key_in_any_connector() -> None:
    findings = lint({"other": {"connector.class": "x.Y", "database.password": "pw"}})
    assert [f.rule for f in findings] == ["plaintext-secret"]


def test_allow_skips_a_rule_and_unknown_rule_is_refused() -> None:
    assert lint({"src": {**GOOD, "topic.prefix": "x"}}, {"src": GOOD}, allow=["offset-reset"]) == []
    with pytest.raises(LintFailedError, match="known:"):
        lint({"src": GOOD}, allow=["nope"])


def test_errors_fail_and_warnings_do_not() -> None:
    raise_on_errors(lint({"src": {**GOOD, "snapshot.mode": "always"}}))
    with pytest.raises(LintFailedError, match="plaintext-secret"):
        raise_on_errors(lint({"src": {**GOOD, "database.password": "pw"}}))


@pytest.mark.parametrize("environment", ["local", "compose", "prod"])
def test_shipped_configs_lint_clean(environment: str, pipeline: PipelineConfig, settings: Settings) -> None:
    rendered = render(pipeline, settings, environment)
    assert lint({c.name: c.config for c in rendered.connectors}) == []
