from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fresh.settings import REPO_ROOT, Settings
from smt.envelope import BlindIndexer, EnvelopeError, b64url, decrypt
from smt.keyring import (
    FORMAT_V1,
    WRAPPED,
    FileKek,
    Kek,
    KeyringError,
    KeyringSource,
    KeyStateError,
    PassphraseKek,
    kek_from_settings,
    local_kek_path,
    unwrap,
    wrap_aad,
)

FAST = {"log2_n": 10}  # scrypt N=2^10 in tests (the default, 2^15, takes ~0.1 s a derivation)


def kek_file(path: Path, content: bytes | None = None, mode: int = 0o600) -> Path:
    path.write_bytes(os.urandom(32) if content is None else content)
    path.chmod(mode)
    return path


@pytest.fixture(params=["passphrase", "file"])
def kek(request: pytest.FixtureRequest, tmp_path: Path) -> Kek:
    if request.param == "passphrase":
        return PassphraseKek("correct horse battery staple", **FAST)
    return FileKek(kek_file(tmp_path / "kek"))


@pytest.fixture
def wrapped(tmp_path: Path, kek: Kek) -> KeyringSource:
    source = KeyringSource(tmp_path / "ring" / "keyring.json", kek=kek)
    source.generate()
    return source


def plain_of(source: KeyringSource) -> dict[str, Any]:
    assert source.path is not None
    data, _ = unwrap(json.loads(source.path.read_text()), source.kek, "test")
    return dict(data)


def touch(path: Path) -> None:
    os.utime(path, ns=(1, 1))  # a new mtime even within one clock tick: the reader reloads


# ---- the file, unwrapped (the fixture) -----------------------------------------------------------


def test_generate_writes_0600_outside_repo_and_refuses_twice(keyring_source: KeyringSource) -> None:
    assert keyring_source.path is not None
    assert stat.S_IMODE(keyring_source.path.stat().st_mode) == 0o600
    with pytest.raises(KeyringError, match="exists; use `freshctl keys rotate`"):
        keyring_source.generate()


def test_rotate_keeps_old_keys_and_running_reader_reloads(keyring_source: KeyringSource) -> None:
    before = keyring_source.current()
    env = before.active.encrypt(b"anna@example.com", "customers", "email")
    infos = keyring_source.rotate()
    assert [(i.kind, i.role) for i in infos] == [("data", "decrypt-only"), ("data", "active"), ("index", "active")]
    after = keyring_source.current()  # same object, no restart: picks the change up
    assert after.active.id != before.active.id and before.active.id in after.keys
    assert decrypt(after.keys, env, "customers", "email") == b"anna@example.com"
    assert after.blind_index("x") == before.blind_index("x")  # a data key rotation keeps blind indexes


def test_dry_run_writes_nothing(tmp_path: Path, kek: Kek) -> None:
    source = KeyringSource(tmp_path / "k.json", kek=kek)
    source.generate(dry_run=True)
    assert not (tmp_path / "k.json").exists()


def test_env_keyring_is_read_only(keyring_source: KeyringSource) -> None:
    assert keyring_source.path is not None
    text = keyring_source.path.read_text()
    source = KeyringSource.from_settings(Settings(keyring_json=text, keyring_path=Path("/nonexistent")))
    assert source.current().active.id == keyring_source.current().active.id
    with pytest.raises(KeyringError, match="FRESH_KEYRING_JSON"):
        source.rotate()


def test_env_keyring_may_be_wrapped(wrapped: KeyringSource) -> None:
    assert wrapped.path is not None
    source = KeyringSource(env_json=wrapped.path.read_text(), kek=wrapped.kek)
    assert source.current().active.id == wrapped.current().active.id
    with pytest.raises(KeyringError, match=r"wrapped by KEK .*set FRESH_KEYRING_PASSPHRASE or FRESH_KEK_PATH"):
        KeyringSource(env_json=wrapped.path.read_text()).current()


def test_keyring_inside_repo_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="inside the repository"):
        KeyringSource(REPO_ROOT / "keyring.json", kek=FileKek(kek_file(tmp_path / "kek"))).generate()
    with pytest.raises(KeyringError, match="inside the repository"):
        KeyringSource(REPO_ROOT / "keyring.json", allow_unwrapped=True).generate()


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.update(format="x"), "not a keyring"),
    (lambda d: d["keys"][0].update(state="on"), "'state' must be one of"),
    (lambda d: d["keys"][0].update(state="decrypt-only"), "exactly one active key, found 0"),
    (lambda d: d["index_keys"].append({**d["index_keys"][0], "id": "i2"}), "exactly one active key, found 2"),
    (lambda d: d["keys"][0].update(secret="AAAA"), "32 bytes"),
    (lambda d: d["keys"][0].update(id="K!"), "'id' must be"),
    (lambda d: d.pop("index_keys"), "'index_keys' must be a non-empty list"),
    (lambda d: d["keys"][0].update(state="destroyed"), "a destroyed key must not hold a 'secret'"),
])
def test_invalid_keyring_errors_name_the_problem_not_the_secret(keyring_source: KeyringSource, mutate,
                                                                message: str) -> None:
    assert keyring_source.path is not None
    data = json.loads(keyring_source.path.read_text())
    secret = data["keys"][0]["secret"]
    mutate(data)
    keyring_source.path.write_text(json.dumps(data))
    touch(keyring_source.path)
    with pytest.raises(KeyringError) as err:
        KeyringSource(keyring_source.path).current()
    assert message in str(err.value) and secret not in str(err.value) and "\n" not in str(err.value)


# ---- permissions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_group_or_other_readable_keyring_is_refused_with_the_fix(keyring_source: KeyringSource, mode: int) -> None:
    assert keyring_source.path is not None
    keyring_source.path.chmod(mode)
    with pytest.raises(KeyringError) as err:
        KeyringSource(keyring_source.path).current()
    assert str(err.value) == (f"{keyring_source.path}: readable by group or others (mode {mode:o}); "
                              f"run `chmod 600 {keyring_source.path}`")
    keyring_source.path.chmod(0o600)
    assert KeyringSource(keyring_source.path).current().active


def test_kek_file_checks(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match=r"mode 644\); run `chmod 600"):
        FileKek(kek_file(tmp_path / "a", mode=0o644))
    with pytest.raises(KeyringError, match=r"32 random bytes .* found 31 bytes"):
        FileKek(kek_file(tmp_path / "b", os.urandom(31)))
    with pytest.raises(KeyringError, match=r"KEK file not found .*head -c 32 /dev/urandom"):
        FileKek(tmp_path / "missing")
    with pytest.raises(KeyringError, match="inside the repository"):
        FileKek(REPO_ROOT / "kek")
    secret = os.urandom(32)
    text = FileKek(kek_file(tmp_path / "c", b64url(secret).encode() + b"\n"))
    assert text.id == FileKek(kek_file(tmp_path / "d", secret)).id  # base64 text or raw: the same KEK


def test_kek_from_settings(tmp_path: Path) -> None:
    ring = tmp_path / "keyring.json"  # never the user's ~/.config keyring, whose KEK may exist
    unset = Settings(keyring_passphrase="", kek_path="", keyring_path=ring)
    assert kek_from_settings(unset) is None  # an empty FRESH_KEK_PATH: unset
    local = kek_file(local_kek_path(unset))
    found = kek_from_settings(unset)  # the local KEK file `freshctl up` made, once it exists
    assert isinstance(found, FileKek) and found.id == FileKek(local).id
    with pytest.raises(KeyringError, match="cannot read the KEK file"):
        kek_from_settings(Settings(kek_path=tmp_path))  # a folder
    assert isinstance(kek_from_settings(Settings(keyring_passphrase="p")), PassphraseKek)
    assert isinstance(kek_from_settings(Settings(kek_path=kek_file(tmp_path / "k"))), FileKek)
    with pytest.raises(KeyringError, match="both FRESH_KEK_PATH and FRESH_KEYRING_PASSPHRASE are set"):
        kek_from_settings(Settings(kek_path=tmp_path / "k", keyring_passphrase="p"))


# ---- wrapping --------------------------------------------------------------------------------------


def test_wrapped_file_round_trip_holds_no_secret(wrapped: KeyringSource) -> None:
    assert wrapped.path is not None and wrapped.kek is not None
    data = json.loads(wrapped.path.read_text())
    assert set(data) == {"format", "kek", "wrapped"} and data["format"] == WRAPPED and data["kek"] == wrapped.kek.id
    plain = plain_of(wrapped)
    text = wrapped.path.read_text()
    assert all(e["secret"] not in text and e["id"] not in text for e in plain["keys"] + plain["index_keys"])
    ring = wrapped.current()
    assert ring.kek_id == wrapped.kek.id
    env = ring.active.encrypt(b"anna@example.com", "customers", "email")
    wrapped.rotate()
    assert decrypt(wrapped.current().keys, env, "customers", "email") == b"anna@example.com"
    assert stat.S_IMODE(wrapped.path.stat().st_mode) == 0o600


def test_wrong_passphrase_is_one_clear_line(tmp_path: Path) -> None:
    source = KeyringSource(tmp_path / "k.json", kek=PassphraseKek("right", **FAST))
    source.generate()
    with pytest.raises(KeyringError) as err:
        KeyringSource(tmp_path / "k.json", kek=PassphraseKek("wrong", source="FRESH_KEYRING_PASSPHRASE")).current()
    assert str(err.value) == (f"{tmp_path / 'k.json'}: wrong passphrase: FRESH_KEYRING_PASSPHRASE does not open "
                              "this keyring")


def test_wrong_kek_file_is_one_clear_line(tmp_path: Path) -> None:
    source = KeyringSource(tmp_path / "k.json", kek=FileKek(kek_file(tmp_path / "kek1")))
    source.generate()
    other = FileKek(kek_file(tmp_path / "kek2"))
    with pytest.raises(KeyringError) as err:
        KeyringSource(tmp_path / "k.json", kek=other).current()
    message = str(err.value)
    assert "\n" not in message and f"wrapped by KEK {source.kek.id!r}" in message  # type: ignore[union-attr]
    assert f"the configured KEK is {other.id!r}" in message
    with pytest.raises(KeyringError, match="the keyring is wrapped by KEK 'file:"):
        KeyringSource(tmp_path / "k.json", kek=PassphraseKek("x", **FAST)).current()


@pytest.mark.parametrize(("tamper", "message"), [
    (lambda d: d.update(wrapped=d["wrapped"][:-2] + ("AA" if d["wrapped"][-2:] != "AA" else "BB")), "altered"),
    (lambda d: d.update(wrapped=d["wrapped"][:40]), "altered|not a passphrase blob"),
    (lambda d: d.update(wrapped="!!"), "not base64url"),
    (lambda d: d.update(kek="file:0000000000000000"), "wrapped by KEK 'file:0000000000000000'"),
    (lambda d: d.update(format="probablyfresh-keyring-wrapped/9"), "not a keyring"),
])
def test_tampered_wrapped_file_is_refused(wrapped: KeyringSource, tamper: Callable[[dict[str, Any]], None],
                                          message: str) -> None:
    assert wrapped.path is not None
    data = json.loads(wrapped.path.read_text())
    tamper(data)
    wrapped.path.write_text(json.dumps(data))
    touch(wrapped.path)
    with pytest.raises(KeyringError, match=message):
        wrapped.current()


def test_aad_binds_format_and_kek_id(tmp_path: Path) -> None:
    kek = FileKek(kek_file(tmp_path / "kek"))
    blob = kek.wrap(b"{}", wrap_aad(kek.id))
    assert kek.unwrap(blob, wrap_aad(kek.id)) == b"{}"
    assert wrap_aad(kek.id) == f"{WRAPPED}|probablyfresh-keyring/2|{kek.id}".encode()
    with pytest.raises(KeyringError, match="altered"):
        kek.unwrap(blob, f"{WRAPPED}|probablyfresh-keyring/3|{kek.id}".encode())


_PASSPHRASE = PassphraseKek("pass phrase", **FAST)


@settings(max_examples=40, deadline=None)
@given(plain=st.binary(max_size=2000), aad=st.binary(max_size=100), other=st.binary(min_size=1, max_size=100))
def test_passphrase_wrap_unwrap_round_trip_and_aad(plain: bytes, aad: bytes, other: bytes) -> None:
    blob = _PASSPHRASE.wrap(plain, aad)
    assert _PASSPHRASE.unwrap(blob, aad) == plain
    assert len(plain) < 8 or plain not in blob[43:]  # the ciphertext (after the header, salt, check, nonce)
    if other != aad:
        with pytest.raises(KeyringError, match="altered"):
            _PASSPHRASE.unwrap(blob, other)


_BLOB = _PASSPHRASE.wrap(b'{"format": "probablyfresh-keyring/2"}', b"aad")


@settings(max_examples=200, deadline=None)
@given(position=st.integers(0, len(_BLOB) - 1), flip=st.integers(1, 255))
def test_any_changed_byte_of_a_wrapped_blob_is_refused(position: int, flip: int) -> None:
    blob = bytearray(_BLOB)
    blob[position] ^= flip
    with pytest.raises(KeyringError):
        _PASSPHRASE.unwrap(bytes(blob), b"aad")


# ---- the old unwrapped format, and the refusal to write unwrapped ---------------------------------------


def v1_file(path: Path) -> Path:
    """probablyfresh-keyring/1 with the docs/pii.md test-vector keys (k1 = 00..1f, index = 20..3f)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "format": FORMAT_V1, "active": "k1",
        "keys": [{"id": "k1", "created_at": "2026-01-01", "secret": b64url(bytes(range(32)))}],
        "index_key": {"id": "i1", "created_at": "2026-01-01", "secret": b64url(bytes(range(32, 64)))}}))
    path.chmod(0o600)
    return path


VECTOR = "pf1.k1.g.AAECAwQFBgcICQoLcMBnONsxYZm3K3gIQXOEwWtRSTB8D4GWgcUbUEZNzvz0hva4Zjk6vQ"
VECTOR_BIDX = "i1.56780d5cbd84ff1610a7dd01d9d1983da2b392d6857621031ff2a4456c4b57b7"  # kind email


def test_v1_is_read_and_wrap_migrates_it_keeping_every_key(tmp_path: Path, kek: Kek) -> None:
    path = v1_file(tmp_path / "keyring.json")
    ring = KeyringSource(path).current()
    assert ring.kek_id is None and ring.active_index == "i1" and ring.dual_write_index is None
    assert [(i.id, i.kind, i.role) for i in ring.info] == [("k1", "data", "active"), ("i1", "index", "active")]
    with pytest.raises(KeyringError, match="no KEK: set FRESH_KEYRING_PASSPHRASE or FRESH_KEK_PATH"):
        KeyringSource(path).rotate()  # never writes unwrapped unless asked
    with pytest.raises(KeyringError, match="no KEK"):
        KeyringSource(path).wrap()
    before = path.read_bytes()
    KeyringSource(path, kek=kek).wrap(dry_run=True)
    assert path.read_bytes() == before
    KeyringSource(path, kek=kek).wrap()
    assert json.loads(path.read_text())["format"] == WRAPPED
    ring = KeyringSource(path, kek=kek).current()
    assert decrypt(ring.keys, VECTOR, "customers", "email") == b"anna.petrova@example.com"
    assert ring.blind_index.index("anna.petrova@example.com", "email") == VECTOR_BIDX
    assert plain_of(KeyringSource(path, kek=kek))["format"] == "probablyfresh-keyring/2"


def test_kek_rotation_rewraps_with_the_new_kek(wrapped: KeyringSource, tmp_path: Path) -> None:
    assert wrapped.path is not None
    ids = [i.id for i in wrapped.current().info]
    new = FileKek(kek_file(tmp_path / "new-kek"))
    with pytest.raises(KeyringError, match="wrapped by KEK"):
        KeyringSource(wrapped.path, kek=new).wrap()  # the old KEK is needed to read it
    KeyringSource(wrapped.path, kek=new).wrap(from_kek=wrapped.kek)
    assert json.loads(wrapped.path.read_text())["kek"] == new.id
    assert [i.id for i in KeyringSource(wrapped.path, kek=new).current().info] == ids
    with pytest.raises(KeyringError, match="wrapped by KEK"):
        KeyringSource(wrapped.path, kek=wrapped.kek).current()


def test_unwrapped_writes_only_when_asked(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="FRESH_KEYRING_ALLOW_UNWRAPPED=true writes it unwrapped"):
        KeyringSource(tmp_path / "k.json").generate()
    assert not (tmp_path / "k.json").exists()
    KeyringSource(tmp_path / "k.json", allow_unwrapped=True).generate()
    assert json.loads((tmp_path / "k.json").read_text())["format"] == "probablyfresh-keyring/2"
    src = KeyringSource.from_settings(Settings(keyring_path=tmp_path / "k.json", keyring_allow_unwrapped=True))
    assert src.allow_unwrapped and src.kek is None


# ---- data key states -----------------------------------------------------------------------------------


def test_data_key_states_and_their_errors(wrapped: KeyringSource) -> None:
    old = wrapped.current().active
    env = old.encrypt(b"anna@example.com", "customers", "email")
    det = old.encrypt_deterministic(b"gold", "customers", "loyalty_status")
    with pytest.raises(KeyringError, match=f"key {old.id} is active; rotate first"):
        wrapped.disable(old.id)
    with pytest.raises(KeyringError, match=f"key {old.id} is active, not disabled"):
        wrapped.enable(old.id)
    with pytest.raises(KeyringError, match="disable it first"):
        wrapped.destroy(old.id)
    wrapped.rotate()
    with pytest.raises(KeyringError, match=f"key {old.id} is decrypt-only; disable it first"):
        wrapped.destroy(old.id)

    wrapped.disable(old.id)
    ring = wrapped.current()
    assert ring.state(old.id) == "disabled" and old.id not in ring.keys
    with pytest.raises(KeyStateError) as err:
        decrypt(ring.keys, env, "customers", "email")
    assert str(err.value) == f"key {old.id} is disabled: it decrypts nothing until `freshctl keys enable {old.id}`"
    with pytest.raises(EnvelopeError, match="disabled"):  # whatever handles a failed decryption handles this
        decrypt(ring.keys, det, "customers", "loyalty_status")
    with pytest.raises(KeyStateError, match="disabled"):
        ring.keys[old.id]

    wrapped.enable(old.id)
    ring = wrapped.current()
    assert ring.state(old.id) == "decrypt-only"
    assert decrypt(ring.keys, env, "customers", "email") == b"anna@example.com"

    wrapped.disable(old.id)
    wrapped.destroy(old.id, dry_run=True)
    assert wrapped.current().state(old.id) == "disabled"
    wrapped.destroy(old.id)
    ring = wrapped.current()
    assert ring.state(old.id) == "destroyed"
    with pytest.raises(KeyStateError) as err:
        decrypt(ring.keys, env, "customers", "email")
    assert str(err.value) == f"key {old.id} was destroyed: values encrypted with it cannot be decrypted"
    entry = next(e for e in plain_of(wrapped)["keys"] if e["id"] == old.id)
    assert "secret" not in entry and entry["state"] == "destroyed" and entry["destroyed_at"]
    with pytest.raises(KeyringError, match="was destroyed; its secret is gone"):
        wrapped.enable(old.id)
    with pytest.raises(KeyringError, match="already destroyed"):
        wrapped.destroy(old.id)
    with pytest.raises(KeyringError, match="no key 'nope'"):
        wrapped.disable("nope")
    # Unknown ids keep envelope.decrypt's own message.
    with pytest.raises(EnvelopeError, match="does not hold"):
        decrypt(ring.keys, env.replace(old.id, "k0", 1), "customers", "email")


# ---- index keys ----------------------------------------------------------------------------------------


def test_index_key_rotation_opens_and_closes_a_dual_write_window(wrapped: KeyringSource) -> None:
    first = wrapped.current()
    i1 = first.active_index
    assert list(first.index_keys) == [i1] and first.dual_write_index is None
    assert first.blind_index("x") == BlindIndexer(first.index_keys[i1], i1)("x")

    wrapped.rotate_index()
    ring = wrapped.current()
    i2 = ring.active_index
    assert i2 != i1 and ring.dual_write_index == i1 and list(ring.index_keys) == [i2, i1]
    assert all(len(s) == 32 for s in ring.index_keys.values())
    assert ring.blind_index("x") == BlindIndexer(ring.index_keys[i2], i2)("x") != first.blind_index("x")
    assert ring.active.id == first.active.id  # data keys untouched
    with pytest.raises(KeyringError, match=f"a dual-write window is open \\(index key {i1}\\)"):
        wrapped.rotate_index()
    with pytest.raises(KeyringError, match="in a dual-write window; close it first"):
        wrapped.disable(i1)
    with pytest.raises(KeyringError, match=f"key {i2} is active; rotate first \\(`freshctl keys rotate --index`\\)"):
        wrapped.disable(i2)

    wrapped.close_index_window()
    ring = wrapped.current()
    assert ring.dual_write_index is None and list(ring.index_keys) == [i2, i1] and ring.state(i1) == "retired"
    with pytest.raises(KeyringError, match="no dual-write window is open"):
        wrapped.close_index_window()

    wrapped.disable(i1)
    assert list(wrapped.current().index_keys) == [i2]
    wrapped.enable(i1)
    assert wrapped.current().state(i1) == "retired"
    wrapped.disable(i1)
    wrapped.destroy(i1)
    ring = wrapped.current()
    assert list(ring.index_keys) == [i2] and ring.state(i1) == "destroyed"

    wrapped.rotate_index()  # a second rotation: i2 is written alongside i3
    ring = wrapped.current()
    assert ring.dual_write_index == i2 and list(ring.index_keys) == [ring.active_index, i2]


@settings(max_examples=25, deadline=None)
@given(ops=st.lists(st.sampled_from(["rotate", "rotate_index", "close", "disable", "enable", "destroy"]),
                    max_size=12), pick=st.randoms(use_true_random=False))
def test_any_sequence_of_changes_keeps_the_invariants(tmp_path_factory: pytest.TempPathFactory, ops: list[str],
                                                      pick: Any) -> None:
    source = KeyringSource(tmp_path_factory.mktemp("ring") / "k.json", allow_unwrapped=True)
    source.generate()
    for op in ops:
        ids = [i.id for i in source.current().info]
        try:
            if op == "rotate":
                source.rotate()
            elif op == "rotate_index":
                source.rotate_index()
            elif op == "close":
                source.close_index_window()
            else:
                getattr(source, op)(pick.choice(ids))
        except KeyringError:
            pass  # a refused transition leaves the file as it was
        ring = KeyringSource(source.path).current()  # a fresh reader: the file on disk is valid
        states = {i.id: i.role for i in ring.info}
        assert states[ring.active.id] == "active" and states[ring.active_index] == "active"
        assert set(ring.keys) == {i.id for i in ring.info if i.kind == "data" and i.role in ("active", "decrypt-only")}
        assert set(ring.index_keys) == {i.id for i in ring.info if i.kind == "index"
                                        and i.role in ("active", "dual-write", "retired")}
        assert next(iter(ring.index_keys)) == ring.active_index
        assert ring.dual_write_index is None or states[ring.dual_write_index] == "dual-write"
