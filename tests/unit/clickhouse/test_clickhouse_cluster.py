"""The migrations rendered for a ClickHouse cluster (clickhouse/cluster.py). No cluster runs here:
the DDL's shape is checked, and every statement, single-node and cluster, goes through the real
ClickHouse parser (chdb's `formatQuery`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import chdb
import pytest

from clickhouse.cluster import LOCAL_SUFFIX, cluster_migrations, storage_tables
from clickhouse.render import Migration, render_migrations
from fresh.errors import ConfigError
from fresh.pipeline import PipelineConfig
from fresh.settings import Settings

CLUSTER = "probablyfresh"
COMPOSE_DIR = Path(__file__).resolve().parents[3] / "compose" / "clickhouse-cluster"


def clustered(cfg: PipelineConfig) -> PipelineConfig:
    raw: dict[str, Any] = cfg.model_dump(mode="json", exclude_none=True)
    raw["clickhouse"]["cluster"] = CLUSTER
    raw["scale"].update(partitions=4, clickhouse_nodes=2, clickhouse_consumers=2)
    return PipelineConfig.model_validate(raw)


@pytest.fixture(scope="module")
def single(pipeline: PipelineConfig) -> list[Migration]:
    return render_migrations(pipeline, "b:9092", dashboard_password_sha256="0" * 64)


@pytest.fixture(scope="module")
def cluster(pipeline: PipelineConfig) -> list[Migration]:
    return render_migrations(clustered(pipeline), "b:9092", dashboard_password_sha256="0" * 64)


def statements(migrations: list[Migration]) -> list[str]:
    return [s for m in migrations for s in m.statements]


def body(statement: str) -> str:
    return "\n".join(ln for ln in statement.splitlines() if not ln.lstrip().startswith("--")).strip()


def parse(statement: str) -> str:
    """The statement as ClickHouse's own parser formats it; a syntax error raises."""
    literal = "'" + statement.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return str(chdb.query(f"SELECT formatQuery({literal}) AS q", "JSONEachRow").bytes().decode())


@pytest.mark.parametrize("layout", ["single", "cluster"])
def test_every_rendered_statement_parses(layout: str, request: pytest.FixtureRequest) -> None:
    rendered = statements(request.getfixturevalue(layout))
    assert len(rendered) > 80
    for statement in rendered:
        parse(statement)


def test_the_parser_check_can_fail() -> None:
    with pytest.raises(RuntimeError, match="SYNTAX_ERROR"):
        parse("CREATE TABLE a.b ON CLUSTER c (x")


def test_single_node_rendering_is_untouched(single: list[Migration]) -> None:
    sql = "\n".join(m.sql for m in single)
    assert "ON CLUSTER" not in sql and "Replicated" not in sql and "Distributed" not in sql
    assert LOCAL_SUFFIX + " " not in sql


def test_cluster_keeps_the_files_checksums(single: list[Migration], cluster: list[Migration]) -> None:
    assert [(m.name, m.checksum) for m in single] == [(m.name, m.checksum) for m in cluster]


def test_every_ddl_statement_runs_on_the_cluster(cluster: list[Migration]) -> None:
    for statement in statements(cluster):
        b = body(statement)
        if b.startswith(("INSERT INTO", "TRUNCATE TABLE")):  # a recompute: node-local by design
            assert "ON CLUSTER" not in b and f"{LOCAL_SUFFIX} " in b.split("\n")[0] + " "
            continue
        assert f"ON CLUSTER {CLUSTER}" in b, b[:120]


def test_storage_tables_are_replicated_local_with_a_distributed_table_for_reads(
        pipeline: PipelineConfig, cluster: list[Migration]) -> None:
    created = {}
    for statement in statements(cluster):
        m = re.match(r"CREATE TABLE IF NOT EXISTS (\S+) ON CLUSTER \S+ (.*)", body(statement), re.S)
        if m:
            created[m.group(1)] = m.group(2)
    raw, mart = pipeline.clickhouse.raw_database, pipeline.clickhouse.mart_database
    expected = {f"{db}.{e}" for e in pipeline.entities for db in (raw, mart)}
    expected |= {f"{raw}.kafka_errors", f"{mart}.rejects", f"{mart}.schema_drift"}
    assert storage_tables(render_migrations(pipeline, "b:9092")) == expected
    for name in expected:
        db, table = name.split(".")
        local = created[name + LOCAL_SUFFIX]
        path = f"'/clickhouse/tables/{{shard}}/{db}/{table}{LOCAL_SUFFIX}', '{{replica}}'"
        assert re.search(rf"ENGINE = Replicated(Replacing)?MergeTree\({re.escape(path)}", local), name
        assert created[name] == (f"AS {name}{LOCAL_SUFFIX}\n"
                                 f"ENGINE = Distributed('{CLUSTER}', '{db}', '{table}{LOCAL_SUFFIX}')")
    mart_engines = [created[f"{mart}.{e}{LOCAL_SUFFIX}"] for e in pipeline.entities]
    assert all("ReplicatedReplacingMergeTree(" in e and ", version, is_deleted)" in e for e in mart_engines)


def test_kafka_tables_are_shard_local_and_share_one_group_per_entity(pipeline: PipelineConfig,
                                                                    cluster: list[Migration]) -> None:
    cfg = clustered(pipeline)
    kafka = [body(s) for s in statements(cluster) if "ENGINE = Kafka" in s]
    assert len(kafka) == 2 * len(pipeline.entities)  # 006 creates them, 009 re-creates them with the knobs
    for e in pipeline.entities.values():
        table = [k for k in kafka if f"kafka_topic_list = '{e.secure_topic}'" in k][-1]  # the one that stays
        assert table.startswith(f"CREATE TABLE IF NOT EXISTS {pipeline.clickhouse.raw_database}.{e.name}_queue "
                                f"ON CLUSTER {CLUSTER} (")
        assert f"kafka_group_name = '{pipeline.clickhouse.consumer_group}-{e.name}'" in table
        consumers = int(re.findall(r"kafka_num_consumers = (\d+)", table)[0])
        assert consumers == cfg.scale.clickhouse_consumers
        assert consumers * cfg.scale.clickhouse_nodes <= cfg.scale.partitions


def test_materialized_views_write_to_and_read_from_local_tables(pipeline: PipelineConfig,
                                                                cluster: list[Migration]) -> None:
    storage = storage_tables(render_migrations(pipeline, "b:9092"))
    views = [body(s) for s in statements(cluster)
             if body(s).startswith("CREATE MATERIALIZED VIEW") or " MODIFY QUERY" in s]
    assert len(views) >= 4 * len(pipeline.entities)
    for view in views:
        to = re.search(r" TO (\S+) AS", view)
        if to:
            assert to.group(1).endswith(LOCAL_SUFFIX), view[:120]
        for table in storage:  # never the Distributed table
            assert not re.search(rf"(?<![\w.]){re.escape(table)}(?!\w)", view), (table, view[:120])


def test_reads_go_through_the_distributed_tables(pipeline: PipelineConfig, cluster: list[Migration]) -> None:
    views = [body(s) for s in statements(cluster) if re.match(r"CREATE (OR REPLACE )?VIEW", body(s))]
    assert len(views) >= 6
    for view in views:
        assert LOCAL_SUFFIX not in view, view[:120]
    mart = pipeline.clickhouse.mart_database
    daily = next(v for v in views if ".daily_sales " in v)
    assert f"FROM {mart}.purchases FINAL" in daily


def test_grants_cover_the_local_tables_the_distributed_reads_touch(pipeline: PipelineConfig,
                                                                   cluster: list[Migration]) -> None:
    access = next(m for m in cluster if m.name == "007_readonly_access")
    grants = [s for s in access.statements if s.startswith("GRANT")]
    raw = pipeline.clickhouse.raw_database
    for e in pipeline.entities:
        on = [g for g in grants if f" ON {raw}.{e} TO " in g or f" ON {raw}.{e}{LOCAL_SUFFIX} TO " in g]
        assert len(on) == 2 and all(g.startswith(f"GRANT ON CLUSTER {CLUSTER} SELECT(") for g in on)


def test_an_unknown_kind_of_statement_is_refused(single: list[Migration]) -> None:
    odd = [Migration(name="999_odd", path=Path("999_odd.sql.j2"), checksum="x", sql="", server_only=False,
                     statements=["OPTIMIZE TABLE a.b FINAL"])]
    with pytest.raises(ConfigError, match=r"teach clickhouse/cluster\.py"):
        cluster_migrations(single + odd, CLUSTER)


def test_the_compose_cluster_matches_the_rendered_ddl() -> None:
    """compose/clickhouse-cluster.yml's nodes define the cluster the DDL names, and each node its
    own shard/replica macros (the Keeper paths' placeholders)."""
    config = (COMPOSE_DIR / "cluster.xml").read_text(encoding="utf-8")
    assert f"<{CLUSTER}>" in config and config.count("<shard>") == 2
    macros = [(p.name, p.read_text(encoding="utf-8")) for p in sorted(COMPOSE_DIR.glob("macros-*.xml"))]
    assert len(macros) == 2
    assert len({re.search(r"<shard>(\w+)</shard>", text).group(1) for _, text in macros}) == 2  # type: ignore[union-attr]


def test_dashboards_and_verify_read_distributed_tables_or_views(pipeline: PipelineConfig,
                                                                cluster: list[Migration]) -> None:
    """The names the dashboards (grafana/dashboards/*.json) and `verify`/`status` (clickhouse/quality.py)
    read are, in the cluster layout, Distributed tables or views over them: every shard is read."""
    import inspect

    from clickhouse import quality

    raw, mart = pipeline.clickhouse.raw_database, pipeline.clickhouse.mart_database
    readable = set()
    for statement in statements(cluster):
        b = body(statement)
        m = re.match(r"CREATE (?:OR REPLACE )?(TABLE IF NOT EXISTS|VIEW IF NOT EXISTS|VIEW) (\S+) ", b)
        if m and ("ENGINE = Distributed(" in b or "VIEW" in m.group(1)):
            readable.add(m.group(2))
    dashboards = "\n".join(p.read_text(encoding="utf-8")
                           for p in (Path(__file__).resolve().parents[3] / "grafana" / "dashboards").glob("*.json"))
    read = set(re.findall(rf"\b(?:{raw}|{mart})\.\w+", dashboards))
    assert len(read) >= 10
    source = inspect.getsource(quality)
    names = {"raw": raw, "mart": mart, "cfg.clickhouse.mart_database": mart}
    for var, table in re.findall(r"\{(raw|mart|cfg\.clickhouse\.mart_database)\}\.(\w+|\{e\.name\})", source):
        tables = pipeline.entities if table == "{e.name}" else [table]
        read |= {f"{names[var]}.{t}" for t in tables}
    assert read - readable == set()


def test_the_embedded_engine_refuses_a_cluster_config(pipeline: PipelineConfig, settings: Settings,
                                                      tmp_path: Path) -> None:
    from clickhouse.backend import ChdbBackend
    from clickhouse.migrate import migrations_for

    backend = ChdbBackend(tmp_path / "chdb")
    try:
        assert migrations_for(settings, pipeline, backend, for_apply=False)  # one node: fine
        with pytest.raises(ConfigError, match=r"clickhouse\.cluster is 'probablyfresh'.*FRESH_CLICKHOUSE_BACKEND"):
            migrations_for(settings, clustered(pipeline), backend, for_apply=False)
    finally:
        backend.close()


def test_a_retuned_kafka_table_is_recreated_on_the_cluster(pipeline: PipelineConfig) -> None:
    """`migrate` re-creates a Kafka table whose settings drifted (clickhouse/migrate.py `retune`):
    in the cluster layout both statements run ON CLUSTER, so every node's table is re-created."""
    from clickhouse.cluster import cluster_statements
    from clickhouse.render import KafkaTuning, queue_ddl

    cfg = clustered(pipeline)
    table = f"{cfg.clickhouse.raw_database}.stores_queue"
    out = cluster_statements([f"DROP TABLE IF EXISTS {table}",
                              queue_ddl(cfg, "stores", "b:9092", KafkaTuning.from_config(cfg))], CLUSTER)
    assert out[0] == f"DROP TABLE IF EXISTS {table} ON CLUSTER {CLUSTER}"
    assert out[1].startswith(f"CREATE TABLE IF NOT EXISTS {table} ON CLUSTER {CLUSTER} ")
    assert "kafka_num_consumers = 2" in out[1]
    for statement in out:
        parse(statement)
