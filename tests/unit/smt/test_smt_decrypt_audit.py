from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fresh.errors import ConfigError
from fresh.pipeline import PipelineConfig
from fresh.settings import Settings
from freshctl.cli import freshctl
from smt.decrypt_audit import AUDIT_FILE, AuditError, DecryptAudit, DecryptRequest, audit_path, decrypt_audited
from smt.envelope import EnvelopeError
from smt.keyring import FileKek, KeyringError, KeyringSource, unwrap
from smt.processor import DLQ_COLLECTION

FIELDS = {"ts", "event", "os_user", "uid", "operator", "host", "pid", "mode", "entity", "field", "dlq_source",
          "key_ids", "values", "records", "outcome", "error"}


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def secrets_of(source: KeyringSource) -> list[str]:
    assert source.path is not None
    data, _ = unwrap(json.loads(source.path.read_text()), source.kek, "test")
    return [e["secret"] for e in data["keys"] + data["index_keys"] if "secret" in e]


@pytest.fixture
def audit(tmp_path: Path) -> DecryptAudit:
    return DecryptAudit(tmp_path / "audit" / AUDIT_FILE, operator="anna")


def test_value_decrypt_records_who_what_and_outcome(keyring_source: KeyringSource, pipeline: PipelineConfig,
                                                    audit: DecryptAudit) -> None:
    ring = keyring_source.current()
    env = ring.active.encrypt(b"anna.petrova@example.com", "customers", "email")
    req = DecryptRequest(entity=pipeline.entity("customers"), field="email", value=env + "\n")
    assert decrypt_audited(req, keyring_source.current, audit) == [b"anna.petrova@example.com"]
    [rec] = lines(audit.path)
    assert set(rec) == FIELDS
    assert rec["event"] == "secure.decrypt" and rec["operator"] == "anna"
    assert rec["os_user"] and rec["uid"] == os.getuid()
    assert (rec["mode"], rec["entity"], rec["field"], rec["dlq_source"]) == ("value", "customers", "email", None)
    assert (rec["key_ids"], rec["values"], rec["records"], rec["outcome"], rec["error"]) == (
        [ring.active.id], 1, 0, "ok", None)
    assert rec["ts"].endswith("+00:00")
    assert stat.S_IMODE(audit.path.stat().st_mode) == 0o600
    text = audit.path.read_text()
    assert "anna.petrova" not in text and env not in text and not any(s in text for s in secrets_of(keyring_source))


def test_failures_are_recorded_after_the_outcome(keyring_source: KeyringSource, pipeline: PipelineConfig,
                                                 audit: DecryptAudit) -> None:
    ring = keyring_source.current()
    env = ring.active.encrypt(b"+12125550147", "customers", "phone")
    wrong_field = DecryptRequest(entity=pipeline.entity("customers"), field="email", value=env)
    with pytest.raises(EnvelopeError, match="does not authenticate"):
        decrypt_audited(wrong_field, keyring_source.current, audit)
    not_envelope = DecryptRequest(entity=pipeline.entity("customers"), field="email", value="anna@example.com")
    with pytest.raises(EnvelopeError, match="not an envelope"):
        decrypt_audited(not_envelope, keyring_source.current, audit)

    def no_keyring() -> Any:
        raise KeyringError("k.json: wrong passphrase: FRESH_KEYRING_PASSPHRASE does not open this keyring")

    with pytest.raises(KeyringError):
        decrypt_audited(wrong_field, no_keyring, audit)
    a, b, c = lines(audit.path)
    assert (a["outcome"], a["values"], a["key_ids"]) == ("error", 0, [ring.active.id])
    assert a["error"].startswith("envelope does not authenticate for customers.email")
    assert (b["outcome"], b["key_ids"]) == ("error", []) and "anna@example.com" not in audit.path.read_text()
    assert (c["outcome"], c["key_ids"]) == ("error", []) and "wrong passphrase" in c["error"]


def test_destroyed_key_is_audited_by_id(tmp_path: Path, pipeline: PipelineConfig, audit: DecryptAudit) -> None:
    source = KeyringSource(tmp_path / "k.json", allow_unwrapped=True)
    source.generate()
    old = source.current().active
    env = old.encrypt(b"Anna", "customers", "first_name")
    source.rotate()
    source.disable(old.id)
    source.destroy(old.id)
    req = DecryptRequest(entity=pipeline.entity("customers"), field="first_name", value=env)
    with pytest.raises(EnvelopeError, match=f"key {old.id} was destroyed"):
        decrypt_audited(req, source.current, audit)
    [rec] = lines(audit.path)
    assert rec["key_ids"] == [old.id] and rec["outcome"] == "error" and "destroyed" in rec["error"]


def test_records_and_dlq_modes_count_values(keyring_source: KeyringSource, pipeline: PipelineConfig,
                                            audit: DecryptAudit) -> None:
    ring = keyring_source.current()
    seal = ring.active.encrypt
    recs = [{"_id": i, "customer": {"email": seal(f"c{i}@example.com".encode(), "purchases", "customer.email"),
                                    "phone": seal(b"+12125550147", "purchases", "customer.phone")}} for i in range(3)]
    recs[2]["note"] = "pf1.zz.g.AAAA"  # an envelope-shaped string outside the policy, naming no key we hold
    text = "\n".join(map(json.dumps, recs)) + "\n\n"
    req = DecryptRequest(entity=pipeline.entity("purchases"), lines=io.StringIO(text))
    out = decrypt_audited(req, keyring_source.current, audit)
    assert [json.loads(o)["customer"]["email"] for o in out] == ["c0@example.com", "c1@example.com", "c2@example.com"]
    dlq = DecryptRequest(dlq_source="cdc.x.customers", value=seal(b'{"a":1}', DLQ_COLLECTION, "cdc.x.customers"))
    assert decrypt_audited(dlq, keyring_source.current, audit) == [b'{"a":1}']
    bad = DecryptRequest(entity=pipeline.entity("purchases"), lines=io.StringIO(json.dumps(recs[0]) + "\n[1]\n"),
                         lines_name="recs.jsonl")
    with pytest.raises(ConfigError, match=r"recs\.jsonl: line 2 is not a JSON object"):
        decrypt_audited(bad, keyring_source.current, audit)
    r, d, e = lines(audit.path)
    assert (r["mode"], r["values"], r["records"], r["key_ids"], r["field"]) == (
        "records", 6, 3, sorted([ring.active.id, "unknown"]), None)
    assert (d["mode"], d["dlq_source"], d["values"], d["entity"]) == ("dlq", "cdc.x.customers", 1, None)
    assert (e["outcome"], e["records"], e["values"]) == ("error", 1, 2)
    assert "example.com" not in audit.path.read_text()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# prefixed, so that no generated value is a word the audit record itself uses ("None", "records", ...)
@given(values=st.lists(st.text(min_size=1, max_size=40).map(lambda s: "plain-" + s.strip()), min_size=1, max_size=4),
       keys=st.lists(st.text(min_size=1, max_size=20).map(lambda s: "key-" + s), max_size=3))
def test_audit_never_holds_plaintext_record_keys_or_key_material(tmp_path_factory: pytest.TempPathFactory,
                                                                 keyring_source: KeyringSource,
                                                                 pipeline: PipelineConfig, values: list[str],
                                                                 keys: list[str]) -> None:
    ring = keyring_source.current()
    audit = DecryptAudit(tmp_path_factory.mktemp("audit") / AUDIT_FILE, operator="op")
    rec: dict[str, Any] = {"_id": 1, "manager": ring.active.encrypt(values[0].encode(), "stores", "manager")}
    rec.update({k: {"x": v} for k, v in zip(keys, values, strict=False)})
    decrypt_audited(DecryptRequest(entity=pipeline.entity("stores"), lines=[json.dumps(rec)]), keyring_source.current,
                    audit)
    with pytest.raises(EnvelopeError):  # a failure quotes nothing from the input either
        decrypt_audited(DecryptRequest(entity=pipeline.entity("stores"), field="manager", value=values[-1]),
                        keyring_source.current, audit)
    text = audit.path.read_text()
    records = lines(audit.path)
    strings = {str(v) for r in records for k, v in r.items() if k not in ("error",)}
    assert not (set(values) | set(keys)) & strings
    assert not any(s in text for s in secrets_of(keyring_source))
    assert [r["outcome"] for r in records] == ["ok", "error"] and records[0]["values"] == 1


def test_audit_file_is_append_only_0600_and_refused_when_open_to_others(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    for _ in range(2):
        a = DecryptAudit(path)
        a.write(mode="value", entity="e", field="f", dlq_source=None, key_ids=set(), values=0, records=0,
                outcome="ok", error=None)
        a.close()
    assert len(lines(path)) == 2 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert lines(path)[0]["operator"] is None
    path.chmod(0o644)
    with pytest.raises(AuditError, match=r"mode 644\); run `chmod 600"):
        DecryptAudit(path)
    with pytest.raises(AuditError, match="cannot open the decrypt audit file"):
        DecryptAudit(tmp_path / "a.jsonl" / "sub")  # a file where a folder should be
    assert audit_path(Settings(keyring_path=tmp_path / "r" / "k.json")) == tmp_path / "r" / AUDIT_FILE
    assert audit_path(Settings(decrypt_audit_path=tmp_path / "x.jsonl")) == tmp_path / "x.jsonl"


def test_cli_decrypt_appends_the_record_and_warns_nothing_before(tmp_path: Path, monkeypatch) -> None:
    for name in ("FRESH_KEYRING_JSON", "FRESH_KEYRING_PASSPHRASE", "FRESH_DECRYPT_AUDIT_PATH",
                 "FRESH_KEYRING_ALLOW_UNWRAPPED"):
        monkeypatch.delenv(name, raising=False)
    kek = tmp_path / "kek"
    kek.write_bytes(os.urandom(32))
    kek.chmod(0o600)
    env = {"FRESH_KEYRING_PATH": str(tmp_path / "ring" / "keyring.json"), "FRESH_KEK_PATH": str(kek),
           "FRESH_OPERATOR": "ivan"}
    runner = CliRunner()
    assert runner.invoke(freshctl, ["keys", "generate"], env=env).exit_code == 0
    source = KeyringSource(Path(env["FRESH_KEYRING_PATH"]), kek=FileKek(kek))
    value = source.current().active.encrypt(b"Ivan Sidorov", "stores", "manager")
    r = runner.invoke(freshctl, ["secure", "decrypt", "--entity", "stores", "--field", "manager", value], env=env)
    assert r.exit_code == 0 and r.stdout == "Ivan Sidorov\n" and "WARNING" not in r.stderr
    r = runner.invoke(freshctl, ["secure", "decrypt", "--entity", "stores", "--field", "nope", value], env=env)
    assert r.exit_code != 0 and r.stdout == ""
    ok, failed = lines(tmp_path / "ring" / AUDIT_FILE)
    assert (ok["operator"], ok["outcome"], ok["values"]) == ("ivan", "ok", 1)
    assert (failed["outcome"], failed["field"]) == ("error", "nope")
    audit = tmp_path / "ring" / AUDIT_FILE
    audit.chmod(0o644)  # an audit file that cannot be trusted: nothing is decrypted
    r = runner.invoke(freshctl, ["secure", "decrypt", "--entity", "stores", "--field", "manager", value], env=env)
    assert r.exit_code != 0 and "Ivan" not in r.stdout and isinstance(r.exception, AuditError)
