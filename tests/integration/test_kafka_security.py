"""The local broker's security, as a client meets it: SASL_SSL only, each user limited to its ACLs
(docs/security.md, "Kafka"), and each misconfiguration answered by one line naming the setting."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from pydantic import SecretStr

from fresh.clients import check_kafka
from fresh.kafka_connection import KafkaAuthError, KafkaConnection, KafkaTlsError
from fresh.pipeline import PipelineConfig
from fresh.settings import Settings
from fresh.wait import wait_until
from smt.processor import ensure_topics
from stack.kafka_security import ensure_tls, grant_pipeline_acls

FRESHCTL = str(Path(sys.executable).parent / "freshctl")


def _read_error(conn: KafkaConnection, group: str, topic: str) -> KafkaError | None:
    """The error a consumer of `conn` (in a group it may use) gets when it reads `topic` (None: it may read)."""
    consumer = Consumer(conn.config({"group.id": group, "log_level": 0, "enable.auto.commit": False,
                                     "auto.offset.reset": "earliest"}))
    try:
        consumer.subscribe([topic])

        def answer() -> KafkaError | bool:
            msg = consumer.poll(1.0)
            if msg is None:
                return False
            return msg.error() or True  # a record read (no error): allowed

        got = wait_until(answer, timeout_s=60, what=f"{conn.username} reading {topic} to be answered")
        return got if isinstance(got, KafkaError) else None
    finally:
        consumer.close()


def test_each_user_reads_only_what_its_acls_allow(
    settings: Settings, pipeline: PipelineConfig, new_tag: Callable[[], str]
) -> None:
    cfg = pipeline.isolated(f"acl{new_tag()}")
    grant_pipeline_acls(settings, cfg)
    admin = settings.kafka("admin")
    ensure_topics(cfg, admin)
    entity = cfg.entity("customers")
    producer = Producer(admin.config())
    for topic in (entity.cdc_topic, entity.secure_topic):
        producer.produce(topic, b"{}", key=b'{"id": "x"}')
    assert producer.flush(30) == 0

    processor = (settings.kafka("processor"), cfg.pii_processor.consumer_group)
    clickhouse = (settings.kafka("clickhouse"), f"{cfg.clickhouse.consumer_group}-{entity.name}")
    assert _read_error(*processor, entity.cdc_topic) is None
    assert _read_error(*clickhouse, entity.secure_topic) is None
    # ClickHouse never reads plaintext PII; the processor never reads what ClickHouse reads. (Connect
    # may read no topic but its own `_connect-*`: its only group is the worker's, which a probe cannot join.)
    denied = ((clickhouse, entity.cdc_topic), (processor, entity.secure_topic))
    for (conn, group), topic in denied:
        err = _read_error(conn, group, topic)
        assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, (conn.username, topic, err)


def test_a_wrong_password_is_one_line_naming_the_setting(settings: Settings) -> None:
    wrong = settings.kafka("processor").model_copy(update={"password": SecretStr("not-the-password")})
    with pytest.raises(KafkaAuthError, match="FRESH_KAFKA_PROCESSOR_PASSWORD") as err:
        check_kafka(wrong, timeout_s=15)
    assert "\n" not in str(err.value) and "not-the-password" not in str(err.value)


def test_an_untrusted_ca_is_one_line_naming_the_setting(settings: Settings, tmp_path: Path) -> None:
    other = ensure_tls(tmp_path / "other-ca").ca  # a CA that did not sign the broker's certificate
    conn = settings.kafka("admin").model_copy(update={"ca_file": other})
    with pytest.raises(KafkaTlsError, match="FRESH_KAFKA_CA_FILE") as err:
        check_kafka(conn, timeout_s=15)
    assert "\n" not in str(err.value)


def _cli(settings: Settings, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "FRESH_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "FRESH_STACK_HOME": str(settings.stack_home), **env}
    return subprocess.run([FRESHCTL, *args], env=full, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize(("env", "setting"), [
    ({"FRESH_KAFKA_ADMIN_PASSWORD": "wrong-password"}, "FRESH_KAFKA_ADMIN_PASSWORD"),
    ({"FRESH_KAFKA_CA_FILE": "/nonexistent/ca.pem"}, "FRESH_KAFKA_CA_FILE"),
    ({"FRESH_KAFKA_CERT_FILE": "/nonexistent/client.pem", "FRESH_KAFKA_KEY_FILE": "/nonexistent/client.key"},
     "FRESH_KAFKA_CERT_FILE"),
], ids=["wrong password", "missing CA file", "missing client certificate"])
def test_the_cli_says_which_setting_to_fix_in_one_line(settings: Settings, env: dict[str, str], setting: str) -> None:
    done = _cli(settings, env, "secure", "health")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and setting in lines[0], lines[0]
    assert "wrong-password" not in done.stderr + done.stdout
