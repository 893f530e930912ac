"""The one settings loader. Only `main()` (the CLI) and test fixtures call `load_settings`;
everything else receives a `Settings` object or plain typed arguments."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fresh.errors import ConfigError
from fresh.kafka_connection import DEFAULT_USERS, KafkaConnection, KafkaRole, SaslMechanism, SecurityProtocol

REPO_ROOT = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    """Where things are. Environment variables `FRESH_<NAME>` override each field."""

    model_config = SettingsConfigDict(env_prefix="FRESH_", extra="ignore")

    environment: str = "local"
    pipeline_config: Path = REPO_ROOT / "pipeline.yaml"

    # Native local stack: its state folder and the ports it listens on (127.0.0.1 only).
    stack_home: Path = REPO_ROOT / ".stack"
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    # Benchmarks only (benchmarks/kafka_tls_throughput.py, on a stack of its own): an extra PLAINTEXT
    # listener on 127.0.0.1 to compare against. Unset: the broker has no plaintext client listener.
    kafka_plaintext_port: int | None = None
    connect_port: int = 8083
    # Kafka Connect workers in the stack's one Connect group; worker i listens on connect_port + i - 1.
    connect_workers: int = Field(default=1, ge=1)
    mongo_port: int = 27017

    # Clients. Empty means "the local stack on the ports above".
    kafka_bootstrap: str = ""
    # Kafka security (docs/security.md "Kafka"): one user per client role, FRESH_KAFKA_<ROLE>_USER and
    # FRESH_KAFKA_<ROLE>_PASSWORD; an empty password is read from <kafka_users_dir>/<user>.password.
    kafka_security_protocol: SecurityProtocol = "SASL_SSL"
    kafka_sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    kafka_ca_file: Path | None = None  # default: <stack_home>/kafka/tls/ca.pem (the local stack's CA)
    kafka_cert_file: Path | None = None  # client certificate and key (mutual TLS), optional
    kafka_key_file: Path | None = None
    kafka_users_dir: Path | None = None  # default: <stack_home>/kafka/users
    kafka_admin_user: str = DEFAULT_USERS[KafkaRole.ADMIN]
    kafka_admin_password: SecretStr = SecretStr("")
    kafka_connect_user: str = DEFAULT_USERS[KafkaRole.CONNECT]
    kafka_connect_password: SecretStr = SecretStr("")
    kafka_processor_user: str = DEFAULT_USERS[KafkaRole.PROCESSOR]
    kafka_processor_password: SecretStr = SecretStr("")
    kafka_clickhouse_user: str = DEFAULT_USERS[KafkaRole.CLICKHOUSE]
    kafka_clickhouse_password: SecretStr = SecretStr("")
    # chdb's embedded librdkafka has no SCRAM ("Current build options: PLAIN"): the ClickHouse Kafka
    # engine authenticates with PLAIN, inside the same TLS (docs/security.md). A server may use SCRAM.
    kafka_clickhouse_sasl_mechanism: SaslMechanism = "PLAIN"
    connect_url: str = ""
    connect_user: str = ""
    connect_password: SecretStr = SecretStr("")
    connect_timeout_s: float = 10.0
    mongo_uri: SecretStr = SecretStr("")

    # ClickHouse: "chdb" (embedded engine, local stack) or "server" (clickhouse-connect).
    clickhouse_backend: str = "chdb"
    clickhouse_host: str = "127.0.0.1"
    clickhouse_port: int = 8123
    clickhouse_user: str = "default"
    clickhouse_password: SecretStr = SecretStr("")
    # Password of the read-only dashboard user (server backend): environment or FRESH_SECRETS_DIR, never config.
    clickhouse_dashboard_password: SecretStr = SecretStr("")
    chdb_path: Path = REPO_ROOT / ".stack" / "chdb"  # default: <stack_home>/chdb

    # ---- ClickHouse server over TLS (clickhouse.backend.ServerConnection; docs/security.md) ----
    # FRESH_CLICKHOUSE_SECURE=true: HTTPS, the server's certificate always verified (against
    # FRESH_CLICKHOUSE_CA_FILE when set, else the system's CAs); there is no "skip verify" setting.
    clickhouse_secure: bool = False
    clickhouse_ca_file: Path | None = None  # PEM file of the CA that signed the server's certificate

    # ---- MongoDB over TLS (fresh.clients.mongo_connection_uri adds these to FRESH_MONGO_URI) ----
    mongo_tls: bool = False  # FRESH_MONGO_TLS=true: tls=true in the URI, the server's certificate verified
    mongo_tls_ca_file: Path | None = None  # FRESH_MONGO_TLS_CA_FILE: PEM of the CA (tlsCAFile)
    mongo_tls_cert_key_file: Path | None = None  # FRESH_MONGO_TLS_CERT_KEY_FILE: client cert + key PEM

    # PII keyring: a file outside the repo, or the key material in FRESH_KEYRING_JSON.
    keyring_path: Path = Path.home() / ".config" / "probablyfresh" / "keyring.json"
    keyring_json: SecretStr = SecretStr("")  # FRESH_KEYRING_JSON: the keyring itself; wins over keyring_path
    # The key-encryption key that wraps the keyring (one of the two; docs/pii.md "Keyring").
    keyring_passphrase: SecretStr = SecretStr("")  # FRESH_KEYRING_PASSPHRASE: through scrypt
    kek_path: Path | None = None  # FRESH_KEK_PATH: a file of 32 random bytes, outside the repo, mode 0600
    keyring_allow_unwrapped: bool = False  # FRESH_KEYRING_ALLOW_UNWRAPPED: write without a KEK (throwaway keyrings)
    # Operator decrypt audit: who decrypted what (append-only JSONL). Empty: <keyring dir>/decrypt-audit.jsonl.
    decrypt_audit_path: Path | None = None
    operator: str = ""  # FRESH_OPERATOR: the person behind `secure decrypt`, recorded next to the OS user

    @field_validator("kek_path", "decrypt_audit_path", "kafka_plaintext_port", "kafka_ca_file", "kafka_cert_file",
                     "kafka_key_file", "kafka_users_dir", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value  # FRESH_KEK_PATH= means "no KEK file", not "."

    @field_validator("clickhouse_ca_file", "mongo_tls_ca_file", "mongo_tls_cert_key_file", mode="before")
    @classmethod
    def _empty_tls_file_is_unset(cls, value: object) -> object:
        return None if value == "" else value  # FRESH_CLICKHOUSE_CA_FILE= means "not set"

    def model_post_init(self, _context: object) -> None:
        if "chdb_path" not in self.model_fields_set:
            self.chdb_path = self.stack_home / "chdb"  # a stack's engine lives in its own home
        if self.kafka_users_dir is None:
            self.kafka_users_dir = self.stack_home / "kafka" / "users"
        if self.kafka_ca_file is None and self.kafka_security_protocol in ("SSL", "SASL_SSL"):
            self.kafka_ca_file = self.stack_home / "kafka" / "tls" / "ca.pem"
        if not self.kafka_bootstrap:
            self.kafka_bootstrap = f"127.0.0.1:{self.kafka_port}"
        if not self.connect_url:
            self.connect_url = f"http://127.0.0.1:{self.connect_port}"
        if not self.mongo_uri.get_secret_value():
            self.mongo_uri = SecretStr(f"mongodb://127.0.0.1:{self.mongo_port}/?directConnection=true")

    def kafka(self, role: KafkaRole | str = KafkaRole.ADMIN) -> KafkaConnection:
        """The connection config of one client role (its own user): the only source of Kafka client configs."""
        role = KafkaRole(role)
        user = str(getattr(self, f"kafka_{role.value}_user"))
        return KafkaConnection(
            bootstrap_servers=self.kafka_bootstrap, security_protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_clickhouse_sasl_mechanism if role is KafkaRole.CLICKHOUSE
            else self.kafka_sasl_mechanism, role=role, username=user,
            password=getattr(self, f"kafka_{role.value}_password"),
            password_file=(self.kafka_users_dir / f"{user}.password") if self.kafka_users_dir else None,
            ca_file=self.kafka_ca_file, cert_file=self.kafka_cert_file, key_file=self.kafka_key_file)


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment (and explicit overrides), failing with one line.

    FRESH_SECRETS_DIR (compose: /run/secrets) is a folder of files named like the variables
    (`FRESH_CLICKHOUSE_PASSWORD`, ...), each holding one value: docker compose `secrets:`. A variable
    set in the environment wins over its file."""
    secrets_dir = os.environ.get("FRESH_SECRETS_DIR") or None
    if secrets_dir is not None and not Path(secrets_dir).is_dir():
        raise ConfigError(f"setting FRESH_SECRETS_DIR: no folder {secrets_dir}; unset it or mount the secrets there")
    try:
        return Settings(_secrets_dir=secrets_dir, **overrides)  # type: ignore[arg-type,call-arg]
    except ValidationError as exc:
        err = exc.errors()[0]
        key = "FRESH_" + "_".join(str(p) for p in err["loc"]).upper()
        raise ConfigError(f"setting {key}: {err['msg']}") from None
