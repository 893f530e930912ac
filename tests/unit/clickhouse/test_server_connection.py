"""The one ClickHouse server connection config (clickhouse.backend.ServerConnection): what
clickhouse-connect gets from the settings, TLS with verification, and a password that never prints."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from clickhouse.backend import ServerConnection, _fix_for
from fresh.errors import ConfigError
from fresh.settings import Settings

PASSWORD = "s3cret-not-to-print"


def settings(**fields: object) -> Settings:
    return Settings(clickhouse_backend="server", clickhouse_host="ch.example", clickhouse_user="probablyfresh",
                    clickhouse_password=PASSWORD, **fields)  # type: ignore[arg-type]


def test_plain_http_without_tls_options() -> None:
    conn = ServerConnection.from_settings(settings(clickhouse_port=8123))
    assert conn.client_kwargs() == {"host": "ch.example", "port": 8123, "username": "probablyfresh",
                                    "password": PASSWORD, "secure": False}
    assert conn.address == "http://ch.example:8123"


def test_tls_verifies_against_the_ca_file(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    conn = ServerConnection.from_settings(settings(clickhouse_port=8443, clickhouse_secure=True,
                                                   clickhouse_ca_file=str(ca)))
    kwargs = conn.client_kwargs()
    assert kwargs["secure"] is True and kwargs["verify"] is True and kwargs["ca_cert"] == str(ca)
    assert conn.address == "https://ch.example:8443"


def test_tls_without_a_ca_file_verifies_against_the_system_cas() -> None:
    kwargs = ServerConnection.from_settings(settings(clickhouse_secure=True)).client_kwargs()
    assert kwargs["secure"] is True and kwargs["verify"] is True and "ca_cert" not in kwargs


def test_the_environment_reaches_the_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("x", encoding="utf-8")
    monkeypatch.setenv("FRESH_CLICKHOUSE_SECURE", "true")
    monkeypatch.setenv("FRESH_CLICKHOUSE_CA_FILE", str(ca))
    conn = ServerConnection.from_settings(Settings())
    assert conn.secure and conn.ca_file == ca
    monkeypatch.setenv("FRESH_CLICKHOUSE_CA_FILE", "")  # empty means unset, not "."
    assert ServerConnection.from_settings(Settings()).ca_file is None


def test_every_option_is_a_get_client_parameter(tmp_path: Path) -> None:
    from clickhouse_connect.driver import create_client
    from clickhouse_connect.driver.httpclient import HttpClient

    ca = tmp_path / "ca.crt"
    ca.write_text("x", encoding="utf-8")
    conn = ServerConnection.from_settings(settings(clickhouse_secure=True, clickhouse_ca_file=str(ca)))
    kwargs = conn.client_kwargs()
    # get_client passes what it does not name itself on to the HTTP client
    accepted = set(inspect.signature(create_client).parameters) | set(inspect.signature(HttpClient).parameters)
    assert set(kwargs) <= accepted, f"clickhouse-connect does not know {set(kwargs) - accepted}"


def test_a_ca_file_without_tls_or_missing_is_refused_naming_the_setting(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match="FRESH_CLICKHOUSE_CA_FILE is set but FRESH_CLICKHOUSE_SECURE"):
        ServerConnection.from_settings(settings(clickhouse_ca_file=str(ca)))
    with pytest.raises(ConfigError, match=r"setting FRESH_CLICKHOUSE_CA_FILE: no file .*no\.crt"):
        ServerConnection.from_settings(settings(clickhouse_secure=True, clickhouse_ca_file=str(tmp_path / "no.crt")))


def test_the_password_never_prints(tmp_path: Path) -> None:
    conn = ServerConnection.from_settings(settings(clickhouse_secure=True))
    for text in (repr(conn), str(conn), conn.address, f"{conn}"):
        assert PASSWORD not in text


@pytest.mark.parametrize(("error", "names"), [
    ("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate", "FRESH_CLICKHOUSE_CA_FILE"),
    ("[SSL: WRONG_VERSION_NUMBER] wrong version number", "FRESH_CLICKHOUSE_PORT"),
    ("Code: 516. DB::Exception: probablyfresh: Authentication failed", "FRESH_CLICKHOUSE_PASSWORD"),
    ("[Errno 111] Connection refused", "FRESH_CLICKHOUSE_HOST"),
])
def test_a_failed_connection_names_the_setting_to_fix(error: str, names: str) -> None:
    fix = _fix_for(Exception(error), ServerConnection.from_settings(settings(clickhouse_secure=True)))
    assert names in fix and "\n" not in fix
