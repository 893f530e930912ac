"""The one Kafka connection config: what it builds, what it never shows, and a lint proving that
no other module of the repo builds a Kafka client config."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import SecretStr

from clickhouse.backend import _one_line
from fresh.kafka_connection import KafkaAuthError, KafkaConnection, KafkaRole, KafkaTlsError
from fresh.settings import REPO_ROOT, Settings

THE_MODULE = REPO_ROOT / "fresh" / "kafka_connection.py"
# Tests that read config files the stack or compose writes (and assert on their keys); they build no client.
READS_CONFIG_FILES = {REPO_ROOT / "tests" / "unit" / "compose" / "test_compose_file.py",
                      REPO_ROOT / "tests" / "unit" / "foundation" / "test_stack_connect_workers.py"}
# Keys only a client config holds: a literal of one of them outside THE_MODULE is a config built by hand.
CLIENT_KEYS = ("bootstrap.servers", "security.protocol", "sasl.mechanism", "sasl.username", "sasl.password",
               "sasl.jaas.config", "ssl.ca.location")
CLIENTS = {"Producer", "Consumer", "AdminClient", "SerializingProducer", "DeserializingConsumer"}


def _python_files() -> list[Path]:
    skip = {".venv", ".stack", ".git", "target", "node_modules"}
    return [p for p in REPO_ROOT.rglob("*.py") if not skip & set(p.relative_to(REPO_ROOT).parts)]


def _hand_built(path: Path) -> list[str]:
    """Each place in `path` that builds a Kafka client config by hand: a literal client key (also as
    the start of a Java `key=value` line) or a client constructed from a dict literal."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value.split("=", 1)[0].strip() in CLIENT_KEYS:
                found.append(f"{path}:{node.lineno}: literal {node.value[:40]!r}")
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in CLIENTS and node.args and isinstance(node.args[0], ast.Dict):
                found.append(f"{path}:{node.lineno}: {name}({{...}}) built by hand")
    return found


def test_no_module_but_the_connection_config_builds_a_kafka_client_config() -> None:
    offenders = [line for p in _python_files() if p not in {THE_MODULE, Path(__file__).resolve(), *READS_CONFIG_FILES}
                 for line in _hand_built(p)]
    assert offenders == [], "build Kafka client configs with Settings.kafka(role).config():\n" + "\n".join(offenders)


def test_the_lint_catches_a_hand_built_client(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text('from confluent_kafka import Producer\np = Producer({"bootstrap.servers": "x:1"})\n'
                   'lines = [f"bootstrap.servers={1}", "controller.quorum.bootstrap.servers=x"]\n', encoding="utf-8")
    # the dict key, the f-string's literal part and the call; the broker's own setting is not a client's
    assert len(_hand_built(bad)) == 3


def _settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(stack_home=tmp_path, kafka_bootstrap="127.0.0.1:19999", **kw)  # type: ignore[arg-type]


def test_each_role_is_its_own_user_and_reads_its_password_file(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    users = tmp_path / "kafka" / "users"
    users.mkdir(parents=True)
    for role in KafkaRole:
        (users / f"pf-{role.value}.password").write_text(f"pw-{role.value}\n", encoding="utf-8")
    (tmp_path / "kafka" / "tls").mkdir()
    (tmp_path / "kafka" / "tls" / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    for role in KafkaRole:
        cfg = s.kafka(role).config({"group.id": "g"})
        assert cfg["bootstrap.servers"] == "127.0.0.1:19999"
        assert cfg["security.protocol"] == "sasl_ssl"
        assert cfg["sasl.username"] == f"pf-{role.value}"
        assert cfg["sasl.password"] == f"pw-{role.value}"
        assert cfg["ssl.ca.location"] == str(tmp_path / "kafka" / "tls" / "ca.pem")
        assert cfg["group.id"] == "g"
    assert s.kafka("processor").config()["sasl.mechanism"] == "SCRAM-SHA-512"
    assert s.kafka("clickhouse").config()["sasl.mechanism"] == "PLAIN"  # chdb's librdkafka has no SCRAM


@given(password=st.text(min_size=8, max_size=40).filter(lambda p: p.strip() == p and "*" not in p))
def test_the_password_never_shows_in_repr_str_or_dump(password: str) -> None:
    def shown(secret: str) -> list[str]:
        conn = KafkaConnection(bootstrap_servers="h:1", username="pf-processor", password=SecretStr(secret))
        return [repr(conn), str(conn), conn.model_dump_json(), str(conn.model_dump()),
                " ".join(conn.java_properties(password_ref="${dir:/x:pf-processor.password}"))]

    # a password that is a piece of what is shown anyway ('SASL_SSL', 'sasl.mec') proves nothing
    assume(not any(password in text for text in shown("\x00")))
    for text in shown(password):
        assert password not in text
    conn = KafkaConnection(bootstrap_servers="h:1", username="pf-processor", password=SecretStr(password))
    assert conn.config()["sasl.password"] == password


def test_an_env_password_wins_over_the_file(tmp_path: Path) -> None:
    s = _settings(tmp_path, kafka_processor_password="from-env", kafka_security_protocol="SASL_PLAINTEXT")
    assert s.kafka("processor").config()["sasl.password"] == "from-env"


def test_a_missing_password_names_the_setting(tmp_path: Path) -> None:
    s = _settings(tmp_path, kafka_security_protocol="SASL_PLAINTEXT")
    with pytest.raises(KafkaAuthError, match="FRESH_KAFKA_PROCESSOR_PASSWORD") as err:
        s.kafka("processor").config()
    assert "\n" not in str(err.value)


def test_a_missing_ca_or_client_certificate_names_the_setting(tmp_path: Path) -> None:
    s = _settings(tmp_path, kafka_processor_password="x")
    with pytest.raises(KafkaTlsError, match="FRESH_KAFKA_CA_FILE"):
        s.kafka("processor").config()
    ca = tmp_path / "ca.pem"
    ca.write_text("x", encoding="utf-8")
    s = _settings(tmp_path, kafka_processor_password="x", kafka_ca_file=ca, kafka_cert_file=tmp_path / "no.pem",
                  kafka_key_file=tmp_path / "no.key")
    with pytest.raises(KafkaTlsError, match="FRESH_KAFKA_CERT_FILE"):
        s.kafka("processor").config()


def test_plaintext_needs_no_password_and_sends_no_sasl(tmp_path: Path) -> None:
    cfg = _settings(tmp_path, kafka_security_protocol="PLAINTEXT").kafka("admin").config()
    assert cfg["security.protocol"] == "plaintext"
    assert not [k for k in cfg if k.startswith(("sasl.", "ssl."))]


def test_the_clickhouse_engine_settings_quote_the_password_and_logs_hide_it() -> None:
    conn = KafkaConnection(bootstrap_servers="h:1", username="pf-clickhouse", password=SecretStr("it's\\secret"),
                           sasl_mechanism="PLAIN", role=KafkaRole.CLICKHOUSE)
    engine = conn.clickhouse_engine_settings()
    assert engine["kafka_sasl_password"] == "it\\'s\\\\secret"
    ddl = "CREATE TABLE t (p String) ENGINE = Kafka SETTINGS " + ", ".join(f"{k} = '{v}'" for k, v in engine.items())
    shown = _one_line(ddl, limit=10_000)
    assert "secret" not in shown and "kafka_sasl_password = '[HIDDEN]'" in shown


@pytest.mark.parametrize("reason", [
    "sasl_ssl://127.0.0.1:9092/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed",
    # as librdkafka worded it once under load (CI): a transport error, no "handshake failed"
    "sasl_ssl://127.0.0.1:9092/bootstrap: error:0A000086:SSL routines::certificate verify failed "
    "(after 4ms in state SSL_HANDSHAKE)",
])
def test_an_untrusted_broker_certificate_is_a_tls_error_however_worded(tmp_path: Path, reason: str) -> None:
    conn = _settings(tmp_path, kafka_processor_password="x").kafka("processor")
    err = conn.failure(15, KafkaException(KafkaError(KafkaError._TRANSPORT, reason)))
    assert isinstance(err, KafkaTlsError) and "FRESH_KAFKA_CA_FILE" in str(err)
    refused = conn.failure(15, KafkaException(KafkaError(KafkaError._TRANSPORT, "Connection refused")))
    assert not isinstance(refused, KafkaTlsError) and "FRESH_KAFKA_BOOTSTRAP" in str(refused)
