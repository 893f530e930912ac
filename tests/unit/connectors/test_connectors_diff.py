"""diff: injected keys and masked provider references are not drift; secrets never shown."""

from __future__ import annotations

from connectors.diff import diff_config
from connectors.secrets import mask_config

RENDERED = {
    "connector.class": "io.debezium.connector.mongodb.MongoDbConnector",
    "name": "src",
    "topic.prefix": "cdc",
    "mongodb.connection.string": "${file:/etc/secrets.properties:mongodb.connection.string}",
}


def test_identical_is_clean() -> None:
    assert diff_config("src", RENDERED, dict(RENDERED)) == []


def test_injected_name_is_not_drift() -> None:
    live = {k: v for k, v in RENDERED.items() if k != "name"}
    assert diff_config("src", RENDERED, live) == []
    assert diff_config("src", RENDERED, {**RENDERED, "name": "other"}) == []


def test_masked_or_resolved_reference_is_not_drift() -> None:
    assert diff_config("src", RENDERED, {**RENDERED, "mongodb.connection.string": "[hidden]"}) == []
    resolved = {**RENDERED, "mongodb.connection.string": "mongodb://u:topsecretpw@h"}
    assert diff_config("src", RENDERED, resolved) == []


def test_changed_reference_is_drift() -> None:
    live = {**RENDERED, "mongodb.connection.string": "${env:OTHER}"}
    (change,) = diff_config("src", RENDERED, live)
    assert (change.key, change.change, change.live) == ("mongodb.connection.string", "changed", "${env:OTHER}")


def test_changed_added_removed_and_missing() -> None:
    live = {**RENDERED, "topic.prefix": "old", "extra": "1"}
    live.pop("connector.class")
    changes = {(c.key, c.change) for c in diff_config("src", RENDERED, live)}
    assert changes == {("topic.prefix", "changed"), ("extra", "removed"), ("connector.class", "added")}
    assert [c.change for c in diff_config("src", RENDERED, None)] == ["added"]


def test_plaintext_secret_is_masked_in_changes() -> None:
    rendered = {**RENDERED, "database.password": "pw-in-rendered"}
    live = {**RENDERED, "database.password": "pw-in-live"}
    (change,) = diff_config("src", rendered, live)
    assert "pw-in" not in str(change)
    masked = mask_config({"a.url": "mongodb://user:hunter2@h:1/", "database.password": "x"})
    assert "hunter2" not in str(masked) and masked["database.password"] == "[hidden]"
