"""The one typed Kafka connection config: every Kafka client of the project gets its librdkafka
config from `KafkaConnection.config()` (a unit test proves no other module builds one), and the
local stack's Java clients (the Connect worker) theirs from `java_properties()`.

Each client role has its own SASL user (docs/security.md, "Kafka"): `Settings.kafka(role)`
builds the connection for one role. The password is a `SecretStr`: never printed, logged or
shown by `repr`; when it is not given directly it is read from `<users dir>/<user>.password`,
which `freshctl stack up` writes (mode 0600) for the local stack.
"""

from __future__ import annotations

import logging
import time
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from confluent_kafka import KafkaError, KafkaException
from pydantic import BaseModel, ConfigDict, PrivateAttr, SecretStr

from fresh.errors import FreshError

_librdkafka_log = logging.getLogger("librdkafka")

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]


# How librdkafka words a failed TLS handshake when it reports it as a transport error (seen:
# "SSL handshake failed: ..." and, under load, "error:0A000086:SSL routines::certificate verify
# failed (after 4ms in state SSL_HANDSHAKE)").
_TLS_MARKERS = ("SSL handshake failed", "certificate verify failed", "SSL routines", "state SSL_HANDSHAKE")
_DENIED = (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED,
           KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED)


class KafkaRole(StrEnum):
    """Who a client is: each role authenticates as its own user with only the ACLs it needs."""

    ADMIN = "admin"  # freshctl's admin tooling: topics, ACLs, status (super user)
    CONNECT = "connect"  # the Kafka Connect worker and the connectors' producers
    PROCESSOR = "processor"  # the PII processor
    CLICKHOUSE = "clickhouse"  # the ClickHouse Kafka engine


DEFAULT_USERS = {role: f"pf-{role.value}" for role in KafkaRole}


class KafkaUnreachableError(FreshError):
    """No Kafka broker answered at the bootstrap address."""


class KafkaAuthError(FreshError):
    """The broker refused the client's SASL credentials."""


class KafkaTlsError(FreshError):
    """The TLS setup of a Kafka client is wrong: a missing file or a certificate nobody trusts."""


class _LibrdkafkaLog(logging.LoggerAdapter[logging.Logger]):
    """librdkafka's own log lines (`%3|...|FAIL|...`), all at DEBUG: the error the caller raises
    says what matters in one line."""

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        self.logger.debug(msg, *args, **kwargs)


class KafkaConnection(BaseModel):
    """How one client role reaches the brokers. `repr` and `str` never show the password."""

    model_config = ConfigDict(frozen=True)

    bootstrap_servers: str
    security_protocol: SecurityProtocol = "SASL_SSL"
    sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    role: KafkaRole = KafkaRole.ADMIN
    username: str = ""
    password: SecretStr = SecretStr("")
    password_file: Path | None = None  # read when `password` is empty
    ca_file: Path | None = None
    cert_file: Path | None = None  # client certificate (mutual TLS), optional
    key_file: Path | None = None
    _last_error: list[KafkaError] = PrivateAttr(default_factory=list)

    # ---- settings names, for the one-line errors ---------------------------------------------

    @property
    def password_setting(self) -> str:
        return f"FRESH_KAFKA_{self.role.value.upper()}_PASSWORD"

    @property
    def sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def secret(self) -> str:
        """The password: given directly, or read from `password_file`."""
        value = self.password.get_secret_value()
        if value or not self.sasl:
            return value
        if self.password_file is None or not self.password_file.is_file():
            where = f" or create {self.password_file}" if self.password_file else ""
            raise KafkaAuthError(
                f"no password for Kafka user {self.username} ({self.role.value}): set {self.password_setting}{where} "
                "(freshctl stack up writes the local stack's)")
        return self.password_file.read_text(encoding="utf-8").strip()

    def _check_files(self) -> None:
        if not self.tls:
            return
        files = [("FRESH_KAFKA_CA_FILE", self.ca_file, "the CA certificate that signed the broker's"),
                 ("FRESH_KAFKA_CERT_FILE", self.cert_file, "the client certificate"),
                 ("FRESH_KAFKA_KEY_FILE", self.key_file, "the client certificate's private key")]
        for setting, path, what in files:
            if path is not None and not path.is_file():
                raise KafkaTlsError(f"{setting}={path} does not exist: set it to {what} (PEM; the local stack's "
                                    "is <stack home>/kafka/tls/ca.pem, made by freshctl stack up)")
        if (self.cert_file is None) != (self.key_file is None):
            raise KafkaTlsError("FRESH_KAFKA_CERT_FILE and FRESH_KAFKA_KEY_FILE go together: set both or neither")

    # ---- client configs ----------------------------------------------------------------------

    def security(self) -> dict[str, str]:
        """The security part of the librdkafka config (secrets included: never log it)."""
        self._check_files()
        out = {"security.protocol": self.security_protocol.lower()}
        if self.sasl:
            out.update({"sasl.mechanism": self.sasl_mechanism, "sasl.username": self.username,
                        "sasl.password": self.secret()})
        if self.tls:
            if self.ca_file is not None:
                out["ssl.ca.location"] = str(self.ca_file)
            if self.cert_file is not None and self.key_file is not None:
                out.update({"ssl.certificate.location": str(self.cert_file), "ssl.key.location": str(self.key_file)})
            out["ssl.endpoint.identification.algorithm"] = "https"
        return out

    def config(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """A librdkafka config for this role, whose logs and errors go to the `librdkafka` logger,
        never straight to stderr. Every Kafka client of the project starts from this."""
        return {"bootstrap.servers": self.bootstrap_servers, "logger": _LibrdkafkaLog(_librdkafka_log, {}),
                "error_cb": self._on_error, **self.security(), **(extra or {})}

    def _on_error(self, err: KafkaError) -> None:
        self.note(err)
        level = logging.WARNING if err.fatal() else logging.DEBUG
        _librdkafka_log.log(level, "librdkafka error code=%s fatal=%s reason=%s", err.name(), err.fatal(), err.str())

    def note(self, err: KafkaError) -> None:
        """Remember `err` (an `error_cb` of a client built with a custom callback should call this),
        so `failure()` can say whether credentials or TLS were the cause."""
        if err.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL, *_DENIED) or "SSL" in err.str():
            self._last_error[:] = [err]

    def password_ref(self) -> str:
        """A Kafka config provider reference to the password file (`${dir:<folder>:<file>}`, resolved
        by a worker or broker with the `dir` provider): config files that hold it hold no secret."""
        if self.password_file is None:
            raise KafkaAuthError(f"no password file for Kafka user {self.username}: set FRESH_KAFKA_USERS_DIR")
        return "${dir:" + f"{self.password_file.parent}:{self.password_file.name}" + "}"

    def java_config(self, prefix: str = "", password_ref: str | None = None, check: bool = True,
                    bootstrap: bool = True) -> dict[str, str]:
        """The same connection for a Java client (the Kafka Connect worker and its `producer.`/
        `consumer.`/`admin.` overrides, a connector's `target.cluster.`). `password_ref` (see
        `password_ref()`) replaces the password, so the file or connector config holds no secret.
        `check=False`: the files need not exist here (a config rendered for another machine's worker);
        `bootstrap=False`: the security part only."""
        if check:
            self._check_files()
        out = {"bootstrap.servers": self.bootstrap_servers} if bootstrap else {}
        out["security.protocol"] = self.security_protocol
        if self.sasl:
            password = password_ref if password_ref is not None else self.secret()
            module = ("org.apache.kafka.common.security.plain.PlainLoginModule" if self.sasl_mechanism == "PLAIN"
                      else "org.apache.kafka.common.security.scram.ScramLoginModule")
            out["sasl.mechanism"] = self.sasl_mechanism
            out["sasl.jaas.config"] = f'{module} required username="{self.username}" password="{password}";'
        if self.tls and self.ca_file is not None:
            out.update({"ssl.truststore.type": "PEM", "ssl.truststore.location": str(self.ca_file)})
        return {prefix + k: v for k, v in out.items()}

    def java_properties(self, prefix: str = "", password_ref: str | None = None) -> list[str]:
        """`java_config` as `key=value` lines of a properties file."""
        return [f"{k}={v}" for k, v in self.java_config(prefix, password_ref).items()]

    def clickhouse_engine_settings(self) -> dict[str, str]:
        """The ClickHouse Kafka engine's connection settings (DDL `SETTINGS`). ClickHouse shows
        `kafka_sasl_password` as '[HIDDEN]' in SHOW CREATE TABLE and system.tables; its CA comes
        from the engine process's OpenSSL default (`SSL_CERT_FILE`, see `clickhouse_ca_env`), as
        the engine has no CA setting per table. docs/security.md says how a server does it."""
        out = {"kafka_broker_list": self.bootstrap_servers}
        if self.security_protocol != "PLAINTEXT":
            out["kafka_security_protocol"] = self.security_protocol.lower()
        if self.sasl:
            out.update({"kafka_sasl_mechanism": self.sasl_mechanism, "kafka_sasl_username": self.username,
                        "kafka_sasl_password": self.secret()})
        return {k: v.replace("\\", "\\\\").replace("'", "\\'") for k, v in out.items()}

    def clickhouse_ca_env(self) -> dict[str, str]:
        """The environment that makes the embedded engine's librdkafka trust this CA (OpenSSL's default file)."""
        self._check_files()
        return {"SSL_CERT_FILE": str(self.ca_file)} if self.tls and self.ca_file is not None else {}

    # ---- errors ------------------------------------------------------------------------------

    def failure_of(self, client: Any, timeout_s: float, exc: KafkaException | None = None,
                   serve_s: float = 3.0) -> FreshError:
        """`failure()` for a call of `client` that failed: first serve the client's error callbacks
        (for up to `serve_s`, until one says refused credentials or TLS), which only `poll` delivers."""
        deadline = time.monotonic() + serve_s
        while not self._last_error and time.monotonic() < deadline:
            client.poll(0.2)
        return self.failure(timeout_s, exc)

    def failure(self, timeout_s: float, exc: KafkaException | None = None) -> FreshError:
        """The one-line error for a client that got no answer, naming the setting to change: the
        password, the CA file, or the bootstrap address."""
        noted = self._last_error[0] if self._last_error else None
        cause = noted or (exc.args[0] if exc is not None and exc.args and isinstance(exc.args[0], KafkaError)
                          else None)
        reason = cause.str() if cause is not None else str(exc) if exc is not None else "no broker in the metadata"
        where = f"Kafka at {self.bootstrap_servers}"
        if cause is not None and cause.code() == KafkaError._AUTHENTICATION:
            return KafkaAuthError(f"{where} refused user {self.username} ({self.role.value}): {_first(reason)}; "
                                  f"set {self.password_setting} (or FRESH_KAFKA_{self.role.value.upper()}_USER)")
        if cause is not None and cause.code() in _DENIED:
            return KafkaAuthError(f"{where}: user {self.username} ({self.role.value}) is not allowed: "
                                  f"{_first(reason)}; create its ACLs (docs/security.md; `freshctl stack up` does "
                                  f"for the pipeline config) or set FRESH_KAFKA_{self.role.value.upper()}_USER")
        if cause is not None and (cause.code() == KafkaError._SSL or any(m in reason for m in _TLS_MARKERS)):
            return KafkaTlsError(f"{where}: TLS handshake failed ({_first(reason)}); set FRESH_KAFKA_CA_FILE to the "
                                 f"CA that signed the broker's certificate (now {self.ca_file or 'the system CAs'})")
        return KafkaUnreachableError(
            f"{where} did not answer within {timeout_s:.0f}s ({_first(reason)}); start it "
            "(freshctl stack up) or set FRESH_KAFKA_BOOTSTRAP to a running broker")


def _first(reason: str) -> str:
    return reason.strip().splitlines()[0][:240] if reason.strip() else reason
