"""One small interface over the two ClickHouse backends; the same SQL runs on both.

- `ChdbBackend`: the embedded engine (chdb) with a persistent session at `Settings.chdb_path`.
  chdb allows one session per process and its data folder must not be shared by two
  processes; its Kafka engine tables consume only while the session is open in this process.
- `ChdbEndpointBackend`: the same engine reached through the process that owns it. While
  `freshctl clickhouse ingest` (or the ingest service of `freshctl up`) holds the data folder, it
  answers queries on a local endpoint (`clickhouse.endpoint`), so `verify`, `audit` and `status`
  work while it runs. One interface, two transports; `open_backend` picks the right one.
- `ServerBackend`: a ClickHouse server through clickhouse-connect.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import SecretStr

from clickhouse.errors import ClickHouseError
from fresh.errors import ConfigError
from fresh.kafka_connection import KafkaConnection
from fresh.settings import Settings

log = logging.getLogger(__name__)

Row = dict[str, Any]

# Server-wide librdkafka settings of the Kafka engine (the consumer group session timeout).
KAFKA_ENGINE_CONFIG = Path(__file__).with_name("kafka_engine.xml")


class Backend(Protocol):
    kind: str
    # chdb runs as the default user and has no access control; users, roles and grants are server only.
    supports_access_control: bool

    def execute(self, sql: str) -> None: ...

    def query(self, sql: str) -> list[Row]: ...

    def close(self) -> None: ...


_SECRET_SETTING = re.compile(r"(kafka_sasl_password\s*=\s*)'(?:[^'\\]|\\.)*'", re.IGNORECASE)


def _one_line(sql: str, limit: int = 160) -> str:
    """`sql` on one line for logs and errors, the Kafka engine's password hidden as SHOW CREATE hides it."""
    flat = " ".join(_SECRET_SETTING.sub(r"\1'[HIDDEN]'", sql).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def trust_kafka_ca(kafka: KafkaConnection) -> None:
    """Make this process's embedded engine trust `kafka`'s CA: the Kafka engine has no CA setting
    per table, so its librdkafka uses OpenSSL's default file, `SSL_CERT_FILE` (call before the
    engine's Kafka tables start consuming)."""
    os.environ.update(kafka.clickhouse_ca_env())


class ChdbBackend:
    kind = "chdb"
    supports_access_control = False

    def __init__(self, path: Path):
        from chdb import session  # imported here: the server backend must not need chdb loaded

        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ClickHouseError(
                f"cannot create the embedded ClickHouse (chdb) data folder {path}: {exc.strerror or exc}; "
                "set FRESH_CHDB_PATH to a writable folder"
            ) from None
        self.path = path
        try:
            # the query string goes to the engine as start-up arguments: its config file
            self._session = session.Session(f"file:{path}?config-file={KAFKA_ENGINE_CONFIG}")
        except Exception as exc:  # chdb raises plain RuntimeError
            raise ClickHouseError(
                f"cannot open the embedded ClickHouse (chdb) at {path}: {exc} "
                "(chdb allows one session per process and one process per data folder; "
                "stop the other user or set FRESH_CHDB_PATH)"
            ) from None
        self._lock = threading.Lock()  # the owner also answers other processes' queries on threads

    def execute(self, sql: str) -> None:
        self._run(sql, "CSV")

    def query(self, sql: str) -> list[Row]:
        out = self._run(sql, "JSONEachRow")
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def run(self, sql: str, fmt: str) -> str:
        """Run one statement and return its output in ClickHouse format `fmt` (the endpoint's call)."""
        return self._run(sql, fmt)

    def _run(self, sql: str, fmt: str) -> str:
        log.debug("chdb sql=%s", _one_line(sql))
        try:
            with self._lock:
                result = self._session.query(sql, fmt)
        except Exception as exc:
            raise ClickHouseError(f"{exc} -- statement: {_one_line(sql)}") from None
        return str(result.data()) if result is not None else ""

    def close(self) -> None:
        self._session.close()


@dataclass(frozen=True)
class ServerConnection:
    """The one connection config for a ClickHouse server: what `clickhouse_connect.get_client` gets.
    TLS always verifies the server's certificate (against `ca_file` when given, else the system's
    CAs); the password is a `SecretStr`, so the object prints without it."""

    host: str
    port: int
    username: str
    password: SecretStr = field(repr=False)
    secure: bool = False
    ca_file: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerConnection:
        if settings.clickhouse_ca_file is not None and not settings.clickhouse_secure:
            raise ConfigError("setting FRESH_CLICKHOUSE_CA_FILE is set but FRESH_CLICKHOUSE_SECURE is not: "
                              "set FRESH_CLICKHOUSE_SECURE=true (TLS) or unset the CA file")
        if settings.clickhouse_ca_file is not None and not settings.clickhouse_ca_file.is_file():
            raise ConfigError(f"setting FRESH_CLICKHOUSE_CA_FILE: no file {settings.clickhouse_ca_file}; "
                              "point it at the PEM of the CA that signed the ClickHouse server's certificate")
        return cls(host=settings.clickhouse_host, port=settings.clickhouse_port, username=settings.clickhouse_user,
                   password=settings.clickhouse_password, secure=settings.clickhouse_secure,
                   ca_file=settings.clickhouse_ca_file)

    @property
    def address(self) -> str:
        """Where, for messages and logs: scheme, host and port, never the password."""
        return f"{'https' if self.secure else 'http'}://{self.host}:{self.port}"

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `clickhouse_connect.get_client`, the password included: never log them."""
        kwargs: dict[str, Any] = {"host": self.host, "port": self.port, "username": self.username,
                                  "password": self.password.get_secret_value(), "secure": self.secure}
        if self.secure:
            kwargs["verify"] = True
            if self.ca_file is not None:
                kwargs["ca_cert"] = str(self.ca_file)
        return kwargs


class ServerBackend:
    kind = "server"
    supports_access_control = True

    def __init__(self, client: Any):
        """`client` is a clickhouse-connect client (see `ServerBackend.connect`)."""
        self._client = client

    @classmethod
    def connect(cls, settings: Settings) -> ServerBackend:
        import clickhouse_connect

        conn = ServerConnection.from_settings(settings)
        try:
            client = clickhouse_connect.get_client(**conn.client_kwargs())
        except Exception as exc:
            raise ClickHouseError(f"ClickHouse server at {conn.address} did not accept a connection "
                                  f"({_reason(exc)}); {_fix_for(exc, conn)}") from None
        return cls(client)

    def execute(self, sql: str) -> None:
        log.debug("server sql=%s", _one_line(sql))
        try:
            self._client.command(sql)
        except Exception as exc:
            raise ClickHouseError(f"{exc} -- statement: {_one_line(sql)}") from None

    def query(self, sql: str) -> list[Row]:
        log.debug("server sql=%s", _one_line(sql))
        try:
            return [dict(r) for r in self._client.query(sql).named_results()]
        except Exception as exc:
            raise ClickHouseError(f"{exc} -- statement: {_one_line(sql)}") from None

    def close(self) -> None:
        self._client.close()


def _reason(exc: Exception) -> str:
    """The short cause inside a driver's long message (`[Errno 111] Connection refused`, an auth error...)."""
    text = str(exc)
    tls = re.search(r"\[SSL: [A-Z_]+\] ([^\"'()]+)", text)
    if tls:
        return "TLS: " + tls.group(1).strip()
    errno = re.search(r"\[Errno -?\d+\] [^\"')]+", text)
    if errno:
        return errno.group(0)
    return " ".join(text.split())[:160]


def _fix_for(exc: Exception, conn: ServerConnection) -> str:
    """The settings to fix for a failed connection: TLS trust, the password, or the address."""
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        if conn.ca_file is None:
            return "set FRESH_CLICKHOUSE_CA_FILE to the CA that signed the server's certificate"
        return (f"FRESH_CLICKHOUSE_CA_FILE ({conn.ca_file}) did not sign the server's certificate; "
                "point it at the CA that did")
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text:
        return ("the port does not speak TLS: set FRESH_CLICKHOUSE_PORT to the server's HTTPS port "
                "or FRESH_CLICKHOUSE_SECURE=false")
    if "Authentication failed" in text or "AUTHENTICATION_FAILED" in text or "Code: 516" in text:
        return "set FRESH_CLICKHOUSE_USER / FRESH_CLICKHOUSE_PASSWORD"
    return ("start it, or set FRESH_CLICKHOUSE_HOST / FRESH_CLICKHOUSE_PORT / FRESH_CLICKHOUSE_SECURE / "
            "FRESH_CLICKHOUSE_USER / FRESH_CLICKHOUSE_PASSWORD (FRESH_CLICKHOUSE_BACKEND=chdb: the embedded engine)")


def open_backend(settings: Settings) -> Backend:
    """The backend `Settings.clickhouse_backend` selects: "chdb" or "server". For chdb: through
    the endpoint of the process that owns the data folder when one runs, else in this process."""
    if settings.clickhouse_backend == "chdb":
        from clickhouse.endpoint import ChdbEndpointBackend, read_owner

        owner = read_owner(settings.chdb_path)
        if owner is not None:
            return ChdbEndpointBackend(owner)
        return ChdbBackend(settings.chdb_path)
    if settings.clickhouse_backend == "server":
        return ServerBackend.connect(settings)
    raise ClickHouseError(
        f"unknown ClickHouse backend {settings.clickhouse_backend!r}; set FRESH_CLICKHOUSE_BACKEND to chdb or server"
    )


def quote(value: str) -> str:
    """A ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
