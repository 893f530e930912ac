from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from fresh.cli import freshctl
from smt.keyring import KeyringSource

COMMANDS = [["keys", "generate"], ["keys", "rotate"], ["keys", "list"], ["secure", "run"], ["secure", "policy"],
            ["secure", "decrypt"]]


@pytest.fixture
def env(tmp_path: Path, monkeypatch) -> dict[str, str]:
    monkeypatch.delenv("FRESH_KEYRING_JSON", raising=False)
    return {"FRESH_KEYRING_PATH": str(tmp_path / "ring" / "keyring.json")}


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_command_has_help_with_examples(cmd: list[str]) -> None:
    result = CliRunner().invoke(freshctl, [*cmd, "--help"])
    assert result.exit_code == 0 and "Example" in result.output


def test_keys_never_print_key_material(env: dict[str, str]) -> None:
    runner = CliRunner()
    outputs = [runner.invoke(freshctl, args, env=env) for args in
               (["keys", "generate"], ["keys", "rotate"], ["keys", "list", "-o", "json"])]
    assert all(r.exit_code == 0 for r in outputs), [r.output for r in outputs]
    data = json.loads(Path(env["FRESH_KEYRING_PATH"]).read_text())
    secrets = [k["secret"] for k in data["keys"]] + [data["index_key"]["secret"]]
    text = "".join(r.output for r in outputs)
    assert not any(s in text for s in secrets)
    assert [row["role"] for row in json.loads(outputs[2].output)] == ["decrypt-only", "active", "blind-index"]


def test_decrypt_field_record_and_dry_run(env: dict[str, str], tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(freshctl, ["keys", "generate"], env=env).exit_code == 0
    ring = KeyringSource(Path(env["FRESH_KEYRING_PATH"])).current()
    env_value = ring.active.encrypt(b"anna@example.com", "purchases", "customer.email")
    r = runner.invoke(freshctl, ["secure", "decrypt", "--entity", "purchases", "--field", "customer.email", env_value],
                      env=env)
    assert r.exit_code == 0 and r.output.strip() == "anna@example.com"
    line = json.dumps({"_id": "T1", "customer": {"email": env_value, "email_bidx": "ab"}})
    r = runner.invoke(freshctl, ["secure", "decrypt", "--entity", "purchases", "--record", "-"], input=line, env=env)
    assert json.loads(r.output)["customer"] == {"email": "anna@example.com", "email_bidx": "ab"}
    r = runner.invoke(freshctl, ["secure", "decrypt", "--entity", "customers", "--field", "email", env_value],
                      env=env)
    assert r.exit_code != 0 and "does not authenticate" in str(r.exception)
    # No broker listens on port 1: the dry run prints the mapping, then one line for the broker, exit 1.
    down = {**env, "FRESH_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    native = "python" if os.environ.get("FRESH_SKIP_NATIVE") == "1" else "native"
    r = runner.invoke(freshctl, ["secure", "run", "--dry-run", "--transform-threads", "3", "-o", "json"], env=down)
    assert r.exit_code == 1 and len(json.loads(r.stdout)) == 5
    assert f"transform={native} transform_threads=3" in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Kafka at 127.0.0.1:1 did not answer within 5s" in errors[0], r.stderr


def test_run_with_kafka_down_fails_fast_in_one_line(env: dict[str, str]) -> None:
    runner = CliRunner()
    assert runner.invoke(freshctl, ["keys", "generate"], env=env).exit_code == 0
    r = runner.invoke(freshctl, ["secure", "run"], env={**env, "FRESH_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    assert r.exit_code == 1 and r.exception is not None
    assert str(r.exception).startswith("Kafka at 127.0.0.1:1 did not answer within 5s")
    assert r.stderr == ""  # nothing else: no librdkafka lines (main() prints the one `error:` line)
