from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from freshctl.cli import freshctl
from smt.keyring import FileKek, KeyringSource, unwrap

COMMANDS = [["keys", "generate"], ["keys", "rotate"], ["keys", "get"], ["keys", "disable"], ["keys", "enable"],
            ["keys", "destroy"], ["keys", "wrap"], ["secure", "run"], ["secure", "policy"], ["secure", "decrypt"],
            ["secure", "health"]]


@pytest.fixture
def env(tmp_path: Path, monkeypatch) -> dict[str, str]:
    for name in ("FRESH_KEYRING_JSON", "FRESH_KEYRING_PASSPHRASE", "FRESH_KEYRING_ALLOW_UNWRAPPED", "FRESH_OPERATOR",
                 "FRESH_DECRYPT_AUDIT_PATH"):
        monkeypatch.delenv(name, raising=False)
    kek = tmp_path / "kek"
    kek.write_bytes(os.urandom(32))
    kek.chmod(0o600)
    return {"FRESH_KEYRING_PATH": str(tmp_path / "ring" / "keyring.json"), "FRESH_KEK_PATH": str(kek)}


def source(env: dict[str, str]) -> KeyringSource:
    return KeyringSource(Path(env["FRESH_KEYRING_PATH"]), kek=FileKek(Path(env["FRESH_KEK_PATH"])))


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_command_has_help_with_examples(cmd: list[str]) -> None:
    result = CliRunner().invoke(freshctl, [*cmd, "--help"])
    assert result.exit_code == 0 and "Example" in result.output


def test_keys_never_print_key_material(env: dict[str, str]) -> None:
    runner = CliRunner()
    outputs = [runner.invoke(freshctl, args, env=env) for args in
               (["keys", "generate"], ["keys", "rotate"], ["keys", "get", "-o", "json"])]
    assert all(r.exit_code == 0 for r in outputs), [r.output for r in outputs]
    data, kek_id = unwrap(json.loads(Path(env["FRESH_KEYRING_PATH"]).read_text()), FileKek(Path(env["FRESH_KEK_PATH"])),
                          "test")
    assert kek_id and kek_id.startswith("file:")
    secrets = [k["secret"] for k in data["keys"] + data["index_keys"]]
    assert len(secrets) == 3
    text = "".join(r.output for r in outputs)
    assert not any(s in text for s in secrets)
    rows = json.loads(outputs[2].output)
    assert [(row["kind"], row["state"]) for row in rows] == [("data", "decrypt-only"), ("data", "active"),
                                                             ("index", "active")]


def test_keys_state_commands_dry_run_and_destroy_needs_yes(env: dict[str, str]) -> None:
    runner = CliRunner()
    assert runner.invoke(freshctl, ["keys", "generate"], env=env).exit_code == 0
    old = source(env).current().active.id
    assert runner.invoke(freshctl, ["keys", "rotate"], env=env).exit_code == 0
    path = Path(env["FRESH_KEYRING_PATH"])
    before = path.read_bytes()
    for args in (["keys", "disable", old], ["keys", "rotate", "--index"], ["keys", "wrap"], ["keys", "rotate"]):
        r = runner.invoke(freshctl, [*args, "--dry-run"], env=env)
        assert r.exit_code == 0 and "dry run: would write" in r.stderr, (args, r.output)
    assert path.read_bytes() == before
    assert runner.invoke(freshctl, ["keys", "disable", old], env=env).exit_code == 0
    r = runner.invoke(freshctl, ["keys", "destroy", old], env=env)
    assert r.exit_code == 2 and "--yes" in r.output
    assert runner.invoke(freshctl, ["keys", "destroy", old, "--dry-run"], env=env).exit_code == 0
    assert source(env).current().state(old) == "disabled"
    secrets = [e["secret"] for e in source(env)._plain()["keys"]]
    r = runner.invoke(freshctl, ["keys", "destroy", old, "--yes", "-o", "json"], env=env)
    assert r.exit_code == 0 and {"id": old, "kind": "data", "state": "destroyed"}.items() <= json.loads(
        r.stdout)[0].items()
    r2 = runner.invoke(freshctl, ["keys", "enable", old], env=env)
    assert r2.exit_code == 1 and "cannot be enabled" in str(r2.exception)
    assert not any(s in r.output + r2.output for s in secrets)
    old_kek = env["FRESH_KEK_PATH"]
    r = runner.invoke(freshctl, ["keys", "wrap", "--from-passphrase-env", "OLD_PASSPHRASE"],
                      env={**env, "OLD_PASSPHRASE": "old one"})
    assert r.exit_code == 1 and "wrapped by KEK 'file:" in str(r.exception)
    r = runner.invoke(freshctl, ["keys", "wrap", "--from-kek-path", old_kek],
                      env={**env, "FRESH_KEK_PATH": None, "FRESH_KEYRING_PASSPHRASE": "new one"})
    assert r.exit_code == 0, r.output
    assert json.loads(path.read_text())["kek"] == "passphrase"
    r = runner.invoke(freshctl, ["keys", "rotate", "--close-window"], env=env)
    assert r.exit_code == 2 and "--close-window goes with --index" in r.output


def test_decrypt_field_record_and_dry_run(env: dict[str, str], tmp_path: Path,
                                          kafka_client_home: dict[str, str]) -> None:
    runner = CliRunner()
    assert runner.invoke(freshctl, ["keys", "generate"], env=env).exit_code == 0
    ring = source(env).current()
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
    down = {**env, **kafka_client_home, "FRESH_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    native = "python" if os.environ.get("FRESH_SKIP_NATIVE") == "1" else "native"
    r = runner.invoke(freshctl, ["secure", "run", "--dry-run", "--transform-threads", "3", "-o", "json"], env=down)
    assert r.exit_code == 1 and len(json.loads(r.stdout)) == 5
    assert f"transform={native} transform_threads=3" in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Kafka at 127.0.0.1:1 did not answer within 5s" in errors[0], r.stderr


def test_run_with_kafka_down_fails_fast_in_one_line(env: dict[str, str], kafka_client_home: dict[str, str]) -> None:
    runner = CliRunner()
    assert runner.invoke(freshctl, ["keys", "generate"], env=env).exit_code == 0
    down = {**env, **kafka_client_home, "FRESH_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    r = runner.invoke(freshctl, ["secure", "run"], env=down)
    assert r.exit_code == 1 and r.exception is not None
    assert str(r.exception).startswith("Kafka at 127.0.0.1:1 did not answer within 5s")
    assert r.stderr == ""  # nothing else: no librdkafka lines (main() prints the one `error:` line)


def test_keys_generate_without_a_kek_creates_one_next_to_the_keyring(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "keyring.json"
    env = {"FRESH_KEYRING_PATH": str(path), "FRESH_KEK_PATH": "", "FRESH_KEYRING_PASSPHRASE": "",
           "FRESH_KEYRING_ALLOW_UNWRAPPED": "false"}
    runner = CliRunner()
    dry = runner.invoke(freshctl, ["keys", "generate", "--dry-run"], env=env)
    assert dry.exit_code == 0 and "would create KEK file" in dry.stderr and not path.parent.exists()
    r = runner.invoke(freshctl, ["keys", "generate"], env=env)
    assert r.exit_code == 0, r.output
    kek = path.parent / "kek"
    assert f"created KEK file {kek}" in r.stderr and oct(kek.stat().st_mode & 0o777) == "0o600"
    assert json.loads(path.read_text())["format"] != "probablyfresh-keyring/2"  # written wrapped
    assert runner.invoke(freshctl, ["keys", "get"], env=env).exit_code == 0  # the KEK is found there
