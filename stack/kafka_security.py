"""The local stack's Kafka security: a local CA and the broker's TLS certificate (made with
`cryptography`), one SCRAM-SHA-512 password per client user, and the ACLs of each user
(docs/security.md, "Kafka").

Everything lives under `<stack home>/kafka/` (git-ignored with `.stack/`), files mode 0600, and is
reused by the next `up` (and kept by `down --wipe`: the users are created again at format time
with the same passwords).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from fresh.clients import kafka_admin
from fresh.errors import StackError
from fresh.kafka_connection import KafkaConnection, KafkaRole
from fresh.pipeline import PipelineConfig
from fresh.settings import Settings

CONNECT_GROUP = "probablyfresh-connect"  # the Connect worker's group.id (stack/services.py)
CONNECT_TOPIC_PREFIX = "_connect-"  # its config, offset and status topics
CERT_DAYS = 825


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the CA certificate clients trust (FRESH_KAFKA_CA_FILE)
    broker: Path  # the broker's private key and certificate chain, PEM (Kafka's PEM keystore)


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    path.chmod(0o600)


def ensure_tls(folder: Path) -> TlsFiles:
    """A local CA and a broker certificate for 127.0.0.1 / localhost, made once and reused."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    files = TlsFiles(ca=folder / "ca.pem", broker=folder / "broker.pem")
    if files.ca.is_file() and files.broker.is_file():
        cert = x509.load_pem_x509_certificate(files.ca.read_bytes())
        if cert.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=7):
            return files
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ProbablyFresh local stack CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=CERT_DAYS))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    # The CA key signs nothing after this: it is not kept, so a stolen stack home cannot mint certificates.
    _write_private(files.broker, key_pem + cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    _write_private(files.ca, ca_cert.public_bytes(pem))
    return files


def ensure_passwords(settings: Settings) -> dict[str, str]:
    """user -> password of every role's user: given in the settings, else read from (or, the first
    time, generated into) `<kafka_users_dir>/<user>.password`, mode 0600. A password given in the
    settings is written to that file too: the broker and the Connect worker read the files."""
    assert settings.kafka_users_dir is not None  # set by Settings.model_post_init
    out = {}
    for role in KafkaRole:
        conn = settings.kafka(role)
        path = settings.kafka_users_dir / f"{conn.username}.password"
        given = conn.password.get_secret_value()
        if given and (not path.is_file() or path.read_text(encoding="utf-8").strip() != given):
            _write_private(path, given.encode())
        elif not path.is_file():
            _write_private(path, secrets.token_urlsafe(32).encode())
        out[conn.username] = path.read_text(encoding="utf-8").strip()
    return out


def _allow(user: str, rtype: ResourceType, name: str, pattern: ResourcePatternType,
           ops: list[AclOperation]) -> list[AclBinding]:
    return [AclBinding(rtype, name, pattern, f"User:{user}", "*", op, AclPermissionType.ALLOW) for op in ops]


def pipeline_acls(settings: Settings, cfg: PipelineConfig) -> list[AclBinding]:
    """Each user's ACLs for `cfg` (the table in docs/security.md). The admin user is a super user."""
    r, w, d, c, dc = (AclOperation.READ, AclOperation.WRITE, AclOperation.DESCRIBE, AclOperation.CREATE,
                      AclOperation.DESCRIBE_CONFIGS)
    lit, pre = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
    topic, group, cluster = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.BROKER
    txn = ResourceType.TRANSACTIONAL_ID
    connect = settings.kafka_connect_user
    processor = settings.kafka_processor_user
    clickhouse = settings.kafka_clickhouse_user
    acls = [
        *_allow(connect, topic, CONNECT_TOPIC_PREFIX, pre, [r, w, d, c, dc]),
        *_allow(connect, group, CONNECT_GROUP, lit, [r, d]),
        # Debezium writes <topic_prefix>.<db>.<collection>; tests' isolated prefixes extend it.
        *_allow(connect, topic, cfg.kafka.topic_prefix, pre, [w, d, c, dc]),
        *_allow(connect, topic, f"__debezium-heartbeat.{cfg.kafka.topic_prefix}", pre, [w, d, c, dc]),
        *_allow(connect, cluster, "kafka-cluster", lit, [d, dc]),
        # The heartbeat canary (MirrorHeartbeatConnector): its own `heartbeats` topic and the routed one.
        *_allow(connect, topic, "heartbeats", lit, [w, d, c, dc]),
        *_allow(connect, topic, "probablyfresh.connect.", pre, [w, d, c, dc]),
    ]
    for e in cfg.entities.values():
        acls += _allow(processor, topic, e.cdc_topic, lit, [r, d])
        acls += _allow(processor, topic, e.secure_topic, lit, [w, d, c, dc])
        acls += _allow(clickhouse, topic, e.secure_topic, lit, [r, d])
    group_id = cfg.pii_processor.consumer_group
    acls += _allow(processor, topic, cfg.kafka.dlq_topic, lit, [w, d, c, dc])
    acls += _allow(processor, group, group_id, lit, [r, d])
    acls += _allow(processor, txn, f"pii-{group_id}-", pre, [w, d])
    acls += _allow(clickhouse, group, f"{cfg.clickhouse.consumer_group}-", pre, [r, d])
    return acls


def engine_connection(settings: Settings, cfg: PipelineConfig) -> KafkaConnection:
    """The ClickHouse Kafka engine's connection (pf-clickhouse) with its ACLs for `cfg` granted:
    what a migration of `cfg`'s Kafka tables renders with (tests and benchmarks of isolated configs)."""
    grant_pipeline_acls(settings, cfg)
    return settings.kafka(KafkaRole.CLICKHOUSE)


def grant_connect_topics(settings: Settings, prefix: str, timeout_s: float = 30.0) -> None:
    """Let the Connect worker's user write topics named `prefix...` (tests' connectors of their own)."""
    ops = [AclOperation.WRITE, AclOperation.DESCRIBE, AclOperation.CREATE, AclOperation.DESCRIBE_CONFIGS]
    _create(settings, _allow(settings.kafka_connect_user, ResourceType.TOPIC, prefix, ResourcePatternType.PREFIXED,
                             ops), timeout_s)


def grant_pipeline_acls(settings: Settings, cfg: PipelineConfig, timeout_s: float = 30.0) -> int:
    """Create `pipeline_acls` as the admin user (idempotent: an existing ACL is created again as a
    no-op). Returns how many bindings were sent."""
    acls = pipeline_acls(settings, cfg)
    _create(settings, acls, timeout_s)
    return len(acls)


def _create(settings: Settings, acls: list[AclBinding], timeout_s: float) -> None:
    admin = kafka_admin(settings.kafka(KafkaRole.ADMIN), {"log_level": 0})
    try:
        for future in admin.create_acls(acls, request_timeout=timeout_s).values():
            future.result(timeout=timeout_s)
    except KafkaException as exc:
        raise StackError(f"cannot create the Kafka ACLs: {exc.args[0].str()}; is {settings.kafka_admin_user} "
                         "a super user of the broker (super.users)?") from None
