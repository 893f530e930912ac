"""The local stack's Kafka security material: made once with `cryptography`, mode 0600, reused;
and the ACL table of docs/security.md as bindings."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from confluent_kafka.admin import AclOperation, ResourceType
from cryptography import x509

from fresh.pipeline import load_pipeline_config
from fresh.settings import Settings
from stack.kafka_security import ensure_passwords, ensure_tls, pipeline_acls


def test_the_ca_and_broker_certificate_are_private_reused_and_name_the_loopback(tmp_path: Path) -> None:
    files = ensure_tls(tmp_path / "tls")
    for path in (files.ca, files.broker):
        assert path.stat().st_mode & 0o777 == 0o600
    first = (files.ca.read_bytes(), files.broker.read_bytes())
    assert (ensure_tls(tmp_path / "tls").ca.read_bytes(), files.broker.read_bytes()) == first  # reused
    broker_pem = files.broker.read_text(encoding="utf-8")
    assert broker_pem.startswith("-----BEGIN PRIVATE KEY-----")  # unencrypted PKCS#8, then the chain
    cert = x509.load_pem_x509_certificates(files.broker.read_bytes())[0]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    assert cert.issuer == ca.subject
    assert "PRIVATE KEY" not in files.ca.read_text(encoding="utf-8")  # the CA key is not kept


def test_passwords_are_generated_once_private_and_a_given_one_wins(tmp_path: Path) -> None:
    settings = Settings(stack_home=tmp_path)
    first = ensure_passwords(settings)
    assert set(first) == {"pf-admin", "pf-connect", "pf-processor", "pf-clickhouse"}
    assert len(set(first.values())) == 4 and all(len(p) >= 40 for p in first.values())
    assert ensure_passwords(settings) == first
    for user in first:
        assert (tmp_path / "kafka" / "users" / f"{user}.password").stat().st_mode & 0o777 == 0o600
    given = ensure_passwords(Settings(stack_home=tmp_path, kafka_processor_password="from-the-env"))
    assert given["pf-processor"] == "from-the-env" and given["pf-admin"] == first["pf-admin"]


def test_clickhouse_may_read_only_secure_topics_and_the_processor_never_reads_them(tmp_path: Path) -> None:
    settings = Settings(stack_home=tmp_path)
    cfg = load_pipeline_config(settings.pipeline_config)
    acls = pipeline_acls(settings, cfg)

    def reads(user: str) -> set[str]:
        return {a.name for a in acls if a.principal == f"User:{user}" and a.restype == ResourceType.TOPIC
                and a.operation == AclOperation.READ}

    assert reads("pf-clickhouse") == set(cfg.secure_topics)
    assert reads("pf-processor") == set(cfg.cdc_topics)
    assert reads("pf-connect") == {"_connect-"}
    assert not [a for a in acls if a.principal == "User:pf-admin"]  # a super user: no ACL needed
