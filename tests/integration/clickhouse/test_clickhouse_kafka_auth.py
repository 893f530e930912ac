"""The ClickHouse Kafka engine's credentials: its tables connect as their own user (pf-clickhouse,
SASL_SSL), and neither SHOW CREATE TABLE nor system.tables shows the password (docs/security.md).
That it really reads as pf-clickhouse is proved by the pipeline tests (`secure_pipeline_running`)."""

from __future__ import annotations

from clickhouse.backend import ChdbBackend
from fresh.pipeline import PipelineConfig
from fresh.settings import Settings


def test_show_create_table_names_the_engine_user_and_hides_its_password(
    settings: Settings, chdb_backend: ChdbBackend, migrated_config: PipelineConfig
) -> None:
    cfg = migrated_config  # migrated with settings.kafka("clickhouse")
    assert settings.kafka_users_dir is not None
    passwords = [p.read_text(encoding="utf-8").strip() for p in settings.kafka_users_dir.glob("*.password")]
    assert len(passwords) == 4
    for e in cfg.entities.values():
        shown = chdb_backend.query(f"SHOW CREATE TABLE {cfg.clickhouse.raw_database}.{e.name}_queue")
        text = str(shown[0]["statement"])
        assert "kafka_sasl_password = '[HIDDEN]'" in text, text
        assert "kafka_sasl_username = 'pf-clickhouse'" in text and "kafka_security_protocol = 'sasl_ssl'" in text
        assert not [pw for pw in passwords if pw in text]
    tables = chdb_backend.query("SELECT engine_full FROM system.tables WHERE engine = 'Kafka'")
    assert tables and not [pw for pw in passwords for t in tables if pw in t["engine_full"]]
