from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from fresh.settings import REPO_ROOT, Settings
from smt.envelope import decrypt
from smt.keyring import KeyringError, KeyringSource


def test_generate_writes_0600_outside_repo_and_refuses_twice(keyring_source: KeyringSource) -> None:
    assert keyring_source.path is not None
    assert stat.S_IMODE(keyring_source.path.stat().st_mode) == 0o600
    with pytest.raises(KeyringError, match="exists; use `freshctl keys rotate`"):
        keyring_source.generate()


def test_rotate_keeps_old_keys_and_running_reader_reloads(keyring_source: KeyringSource) -> None:
    before = keyring_source.current()
    env = before.active.encrypt(b"anna@example.com", "customers", "email")
    infos = keyring_source.rotate()
    assert [i.role for i in infos] == ["decrypt-only", "active", "blind-index"]
    after = keyring_source.current()  # same object, no restart: picks the change up
    assert after.active.id != before.active.id and before.active.id in after.keys
    assert decrypt(after.keys, env, "customers", "email") == b"anna@example.com"
    assert after.blind_index("x") == before.blind_index("x")  # blind indexes stay comparable


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    source = KeyringSource(tmp_path / "k.json")
    source.generate(dry_run=True)
    assert not (tmp_path / "k.json").exists()


def test_env_keyring_is_read_only(keyring_source: KeyringSource) -> None:
    assert keyring_source.path is not None
    text = keyring_source.path.read_text()
    source = KeyringSource.from_settings(Settings(keyring_json=text, keyring_path=Path("/nonexistent")))
    assert source.current().active.id == keyring_source.current().active.id
    with pytest.raises(KeyringError, match="FRESH_KEYRING_JSON"):
        source.rotate()


def test_keyring_inside_repo_is_refused() -> None:
    with pytest.raises(KeyringError, match="inside the repository"):
        KeyringSource(REPO_ROOT / "keyring.json").generate()


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.update(format="x"), "not a keyring"),
    (lambda d: d.update(active="nope"), "'active' must name"),
    (lambda d: d["keys"][0].update(secret="AAAA"), "32 bytes"),
    (lambda d: d.pop("index_key"), "index_key"),
])
def test_invalid_keyring_errors_name_the_problem_not_the_secret(keyring_source: KeyringSource, mutate,
                                                                message: str) -> None:
    assert keyring_source.path is not None
    data = json.loads(keyring_source.path.read_text())
    secret = data["keys"][0]["secret"]
    mutate(data)
    keyring_source.path.write_text(json.dumps(data))
    os.utime(keyring_source.path, ns=(1, 1))
    with pytest.raises(KeyringError) as err:
        KeyringSource(keyring_source.path).current()
    assert message in str(err.value) and secret not in str(err.value)
