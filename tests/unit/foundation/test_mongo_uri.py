"""The one MongoDB URI builder (fresh.clients.mongo_connection_uri): the TLS settings become URI
options, a URI that contradicts them or turns verification off is refused naming the setting, and
the password survives unchanged but never prints (`redact_uri`)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fresh.clients import mongo_connection_uri, redact_uri
from fresh.errors import ConfigError
from fresh.settings import Settings

URI = "mongodb://seed:pa%40ss@mongo:27017/?replicaSet=rs0&authSource=admin"


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    path = tmp_path / "ca.crt"
    path.write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    return path


def test_without_tls_the_uri_is_unchanged() -> None:
    assert mongo_connection_uri(Settings(mongo_uri=URI)).get_secret_value() == URI  # type: ignore[arg-type]


def test_tls_settings_become_uri_options(pem: Path) -> None:
    settings = Settings(mongo_uri=URI, mongo_tls=True, mongo_tls_ca_file=str(pem),  # type: ignore[arg-type]
                        mongo_tls_cert_key_file=str(pem))
    uri = urlsplit(mongo_connection_uri(settings).get_secret_value())
    options = parse_qs(uri.query)
    assert options == {"replicaSet": ["rs0"], "authSource": ["admin"], "tls": ["true"], "tlsCAFile": [str(pem)],
                       "tlsCertificateKeyFile": [str(pem)]}
    assert (uri.username, uri.password, uri.hostname, uri.port) == ("seed", "pa%40ss", "mongo", 27017)


def test_the_local_default_uri_gets_tls_too(pem: Path) -> None:
    settings = Settings(mongo_port=27517, mongo_tls=True, mongo_tls_ca_file=str(pem))  # type: ignore[arg-type]
    uri = urlsplit(mongo_connection_uri(settings).get_secret_value())
    assert uri.port == 27517 and parse_qs(uri.query)["directConnection"] == ["true"]
    assert parse_qs(uri.query)["tls"] == ["true"]


def test_pymongo_accepts_the_built_uri(pem: Path) -> None:
    from pymongo.uri_parser import parse_uri

    settings = Settings(mongo_uri=URI, mongo_tls=True, mongo_tls_ca_file=str(pem))  # type: ignore[arg-type]
    parsed = parse_uri(mongo_connection_uri(settings).get_secret_value())
    assert parsed["options"]["tls"] is True and parsed["options"]["tlsCAFile"] == str(pem)
    assert parsed["password"] == "pa@ss"


@pytest.mark.parametrize(("fields", "message"), [
    ({"mongo_tls_ca_file": "CA"}, "FRESH_MONGO_TLS_CA_FILE / FRESH_MONGO_TLS_CERT_KEY_FILE is set but FRESH_MONGO_TLS"),
    ({"mongo_tls": True, "mongo_tls_ca_file": "/nonexistent/ca.crt"}, "setting FRESH_MONGO_TLS_CA_FILE: no file"),
    ({"mongo_tls": True, "mongo_tls_cert_key_file": "/nonexistent/c.pem"}, "FRESH_MONGO_TLS_CERT_KEY_FILE: no file"),
    ({"mongo_tls": True, "mongo_uri": URI + "&tls=false"}, "contradicts FRESH_MONGO_TLS=true"),
    ({"mongo_tls": True, "mongo_uri": URI + "&tlsInsecure=true"}, "tlsinsecure turns certificate checks off"),
    ({"mongo_tls": True, "mongo_uri": URI + "&tlsAllowInvalidCertificates=true"}, "tlsallowinvalidcertificates"),
])
def test_contradictions_are_refused_naming_the_setting(fields: dict[str, object], message: str, pem: Path) -> None:
    if fields.get("mongo_tls_ca_file") == "CA":
        fields = {**fields, "mongo_tls_ca_file": str(pem)}
    with pytest.raises(ConfigError, match=message) as err:
        mongo_connection_uri(Settings(**{"mongo_uri": URI, **fields}))  # type: ignore[arg-type]
    assert "pa%40ss" not in str(err.value) and "\n" not in str(err.value)


@given(user=st.text(min_size=1, max_size=12), password=st.text(min_size=1, max_size=24))
def test_credentials_survive_and_never_print(user: str, password: str) -> None:
    uri = f"mongodb://{quote(user, safe='')}:{quote(password, safe='')}@mongo:27017/?replicaSet=rs0"
    built = mongo_connection_uri(Settings(mongo_uri=uri, mongo_tls=True))  # type: ignore[arg-type]
    parts = urlsplit(built.get_secret_value())
    assert (parts.username, parts.password) == (quote(user, safe=""), quote(password, safe=""))
    assert str(built) == "**********" and "mongodb" not in repr(built)
    shown = redact_uri(built.get_secret_value())
    assert urlsplit(shown).password == "***" and shown.endswith("replicaSet=rs0&tls=true")
