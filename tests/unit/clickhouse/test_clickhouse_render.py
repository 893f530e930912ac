"""Rendering, statement splitting, rules and the server backend's SQL plumbing (no server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from clickhouse.backend import ServerBackend, quote
from clickhouse.cli import clickhouse
from clickhouse.errors import ClickHouseError
from clickhouse.fields import fields_for, payload_tuple_type
from clickhouse.render import MIGRATIONS_DIR, render_migrations
from clickhouse.rules import rules_array_sql
from clickhouse.statements import split_statements
from fresh.errors import ConfigError
from fresh.pipeline import PipelineConfig


def test_every_migration_renders_from_the_pipeline_config(pipeline: PipelineConfig) -> None:
    migrations = render_migrations(pipeline, "broker-a:9092,broker-b:9092")
    assert [m.name for m in migrations] == sorted(p.name.removesuffix(".sql.j2")
                                                  for p in MIGRATIONS_DIR.glob("*.sql.j2"))
    sql = "\n".join(m.sql for m in migrations)
    assert "broker-a:9092,broker-b:9092" in sql
    for e in pipeline.entities.values():
        assert f"kafka_topic_list = '{e.secure_topic}'" in sql
        assert f"kafka_topic_list = '{e.cdc_topic}'" not in sql
        assert f"kafka_group_name = '{pipeline.clickhouse.consumer_group}-{e.name}'" in sql
    assert f"CREATE DATABASE IF NOT EXISTS {pipeline.clickhouse.raw_database}" in sql
    assert all(m.statements for m in migrations)
    assert [m.name for m in migrations if m.server_only] == ["007_readonly_access"]


def test_readonly_grants_exclude_pii_columns(pipeline: PipelineConfig) -> None:
    access = next(m for m in render_migrations(pipeline, "b:9092") if m.name == "007_readonly_access").sql
    grants = [line for line in access.splitlines() if line.startswith("GRANT SELECT(")]
    customers = next(g for g in grants if f"{pipeline.clickhouse.raw_database}.customers " in g)
    cols = customers[len("GRANT SELECT("):customers.index(")")].split(", ")
    assert "email_bidx" in cols and "loyalty_status" in cols
    assert not {"email", "phone", "first_name", "last_name", "birth_date", "payload"} & set(cols)
    assert "raw_message" not in next(g for g in grants if "kafka_errors" in g)


def test_checksum_is_of_the_file_so_a_config_change_is_not_an_edit(pipeline: PipelineConfig) -> None:
    a = render_migrations(pipeline, "one:9092")
    b = render_migrations(pipeline, "two:9092")
    assert [m.checksum for m in a] == [m.checksum for m in b]
    ingest = next(i for i, m in enumerate(a) if m.name == "006_kafka_ingest")
    assert a[ingest].sql != b[ingest].sql


def test_badly_named_migration_file_is_refused(pipeline: PipelineConfig, tmp_path: Path) -> None:
    (tmp_path / "1_oops.sql.j2").write_text("SELECT 1;")
    with pytest.raises(ConfigError, match="NNN_lowercase_name"):
        render_migrations(pipeline, "b:9092", directory=tmp_path)


def test_missing_template_value_fails_the_render(pipeline: PipelineConfig, tmp_path: Path) -> None:
    (tmp_path / "001_x.sql.j2").write_text("CREATE DATABASE {{ no_such_value }};")
    with pytest.raises(ConfigError, match="no_such_value"):
        render_migrations(pipeline, "b:9092", directory=tmp_path)


def test_split_statements_respects_quotes_and_comments() -> None:
    sql = "-- a; comment\nSELECT 'a;b', \"c;d\" ; /* x; */ SELECT `e;f`;\n-- only a comment;\n  ;"
    assert split_statements(sql) == ["-- a; comment\nSELECT 'a;b', \"c;d\"", "/* x; */ SELECT `e;f`"]
    assert split_statements(r"SELECT 'it\'s; fine'; SELECT 2") == [r"SELECT 'it\'s; fine'", "SELECT 2"]


def test_rules_name_every_broken_rule() -> None:
    sql = rules_array_sql("purchases", "purchase_id")
    for rule in ("missing_business_key", "non_positive_quantity", "total_mismatch", "unknown_status"):
        assert f"'{rule}'" in sql
    assert "bitAnd(deleted = 0, " in sql  # delete markers are checked for key and version only
    assert " AND " not in sql  # short-circuit AND would re-parse `items` once per rule


def test_payload_is_parsed_once_into_a_nested_tuple() -> None:
    fields = fields_for("purchases", "purchase_id")
    typ = payload_tuple_type(fields)
    assert typ.startswith("Tuple(purchase_id String, store_id String")
    assert "customer Tuple(email String, email_bidx String, phone String, phone_bidx String)" in typ
    assert "items" not in typ  # raw JSON text: JSONExtractRaw
    assert "__source_ts_ms Int64" in typ and "__deleted String" in typ
    email = next(f for f in fields if f.column == "customer_email")
    assert email.pii and email.extract_from("d") == "tupleElement(tupleElement(d, 'customer'), 'email')"


def test_unknown_entity_has_no_field_list() -> None:
    with pytest.raises(ConfigError, match="no `_secure` field list"):
        fields_for("suppliers", "supplier_id")


def test_quote_escapes() -> None:
    assert quote("a'b\\c") == "'a\\'b\\\\c'"


class _FakeResult:
    def __init__(self, rows: list[dict[str, Any]]):
        self._rows = rows

    def named_results(self) -> list[dict[str, Any]]:
        return self._rows


class _FakeClient:
    """Stands in for a clickhouse-connect client: records SQL, fails on demand."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    def command(self, sql: str) -> None:
        if "boom" in sql:
            raise RuntimeError("Code: 62. Syntax error")
        self.commands.append(sql)

    def query(self, sql: str) -> _FakeResult:
        return _FakeResult([{"n": 1}])

    def close(self) -> None:
        pass


def test_server_backend_passes_sql_and_maps_errors() -> None:
    client = _FakeClient()
    backend = ServerBackend(client)
    backend.execute("CREATE DATABASE x")
    assert client.commands == ["CREATE DATABASE x"]
    assert backend.query("SELECT 1 AS n") == [{"n": 1}]
    with pytest.raises(ClickHouseError, match="Syntax error -- statement: SELECT boom"):
        backend.execute("SELECT boom")


@pytest.mark.parametrize("command", ["plan", "migrate", "audit", "verify"])
def test_every_command_has_help_with_examples(command: str) -> None:
    result = CliRunner().invoke(clickhouse, [command, "--help"])
    assert result.exit_code == 0 and "Example" in result.output


def test_kafka_latency_knobs_come_from_the_pipeline_config(pipeline: PipelineConfig) -> None:
    raw = pipeline.model_dump(mode="json")
    raw["clickhouse"].update(flush_interval_ms=123, poll_timeout_ms=45, reschedule_ms=67, max_block_size=8910)
    tuned = PipelineConfig.model_validate(raw)
    (tuning,) = [m for m in render_migrations(tuned, "b:9092") if m.name == "009_kafka_tuning"]
    for entity in tuned.entities:
        (ddl,) = [s for s in tuning.statements if s.startswith(f"CREATE TABLE IF NOT EXISTS "
                                                                f"{tuned.clickhouse.raw_database}.{entity}_queue")]
        for setting in ("kafka_flush_interval_ms = 123", "kafka_poll_timeout_ms = 45",
                        "kafka_consumer_reschedule_ms = 67", "kafka_max_block_size = 8910"):
            assert setting in ddl


def test_live_kafka_settings_parse_back_to_the_rendered_ones(pipeline: PipelineConfig) -> None:
    from clickhouse.migrate import engine_settings
    from clickhouse.render import KafkaTuning, queue_settings

    want = queue_settings(pipeline, "purchases", "h1:9092,h2:9092", KafkaTuning.from_config(pipeline))
    engine_full = "Kafka SETTINGS " + ", ".join(f"{k} = {v}" for k, v in want.items())
    assert engine_settings(engine_full) == want


def test_mart_version_is_the_secure_offset(pipeline: PipelineConfig) -> None:
    """010 rewrites 008's MART queries: a rewrite that matched nothing would keep the ms version."""
    (m,) = [m for m in render_migrations(pipeline, "b:9092") if m.name == "010_kafka_order_version"]
    n = len(pipeline.entities)
    assert m.sql.count("toUInt64(_offset) AS version") == 2 * n  # each view, and its recompute
    assert "source_ts_ms) AS version" not in m.sql
    assert sum(s.startswith("TRUNCATE TABLE ") for s in m.statements) == n
