"""Median query time of every dashboard panel on the embedded ClickHouse (chdb), as Grafana would
send it (macros and variables expanded by grafana.macros, variables at All, each dashboard's own
time range; Sales over the seed's year 2025).

The data: the generator's default seed (`freshctl seed`: seed 42, scale 1 = 45 stores, 100
products, 175 customers, 1,000 purchases), or `--scale 1000` for 1,000,000 purchases and 175,000
customers. Each document goes through the PII processor's own transform (the `_secure` payload,
pure-Python path) and into RAW through the migrations' own materialized views: the Kafka engine
tables of migration 006 are replaced by Null tables of the same columns, so no broker is needed
and RAW, MART, rejects and the marts are what the pipeline builds. A temporary chdb folder,
deleted at the end (chdb allows one process per folder).

    .venv/bin/python benchmarks/grafana_panels.py                       # default seed
    .venv/bin/python benchmarks/grafana_panels.py --scale 1000 --repeat 5
    .venv/bin/python benchmarks/grafana_panels.py --snapshots docs/images   # also draw the dashboards
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clickhouse.backend import ChdbBackend
from clickhouse.migrate import migrate
from clickhouse.render import render_migrations
from fresh import cdc_record
from fresh.pipeline import PipelineConfig, load_pipeline_config
from fresh.settings import load_settings
from generator.domain import Domain, Plan
from generator.seed import ENTITIES
from grafana import catalog
from grafana.query import run_dashboard
from grafana.render import dashboard_json
from grafana.snapshot import write_snapshot
from smt.keyring import KeyringSource
from smt.transform import Transformer

BATCH = 20_000
_KAFKA_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS (\S+_queue) \(\s*payload String\s*\) ENGINE = Kafka", re.S)
_NULL_QUEUE = ("CREATE TABLE IF NOT EXISTS {name} (payload String, _key String, _topic LowCardinality(String), "
               "_partition UInt64, _offset UInt64, _timestamp Nullable(DateTime), _error String, "
               "_raw_message String) ENGINE = Null")


def schema_without_kafka(backend: ChdbBackend, cfg: PipelineConfig) -> None:
    """Every migration but 007 (server only), with 006's Kafka tables as Null tables."""
    migrations = [m for m in render_migrations(cfg, "127.0.0.1:1") if not m.server_only]
    for m in migrations:
        m.statements[:] = [(_NULL_QUEUE.format(name=k.group(1)) if (k := _KAFKA_TABLE.search(s)) else s)
                           for s in m.statements]
    migrate(backend, migrations, cfg.clickhouse.raw_database)


def load(backend: ChdbBackend, cfg: PipelineConfig, plan: Plan, keyring_path: Path) -> dict[str, float]:
    source = KeyringSource(keyring_path)
    source.generate()
    keyring = source.current()
    domain = Domain(plan)
    seconds: dict[str, float] = {}
    for entity in ENTITIES:
        started = time.perf_counter()
        e = cfg.entity(entity)
        transform = Transformer(e, cfg.pii_processor.default_region, cfg.pii_processor.max_record_bytes, native=False)
        queue = f"{cfg.clickhouse.raw_database}.{entity}_queue"
        lines: list[str] = []
        for i, doc in enumerate(domain.stream(entity)):
            secure = transform(cdc_record.value(cdc_record.from_document(doc), "r", 1_735_689_600_000 + i), keyring)
            assert secure is not None
            lines.append(json.dumps({"payload": secure.decode(), "_key": cdc_record.key(doc["_id"]).decode(),
                                     "_topic": e.secure_topic, "_partition": 0, "_offset": i, "_error": ""}))
            if len(lines) == BATCH:
                backend.execute(f"INSERT INTO {queue} FORMAT JSONEachRow\n" + "\n".join(lines))
                lines = []
        if lines:
            backend.execute(f"INSERT INTO {queue} FORMAT JSONEachRow\n" + "\n".join(lines))
        seconds[entity] = time.perf_counter() - started
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--scale", type=int, default=1, help="1 = 1,000 purchases; 1000 = 1,000,000")
    ap.add_argument("--repeat", type=int, default=7, help="runs of every panel; the median is printed")
    ap.add_argument("--snapshots", type=Path, help="also write each dashboard's PNG and HTML here")
    args = ap.parse_args()
    cfg = load_pipeline_config(load_settings().pipeline_config)
    plan = Plan(seed=args.seed, scale=args.scale)
    work = Path(tempfile.mkdtemp(prefix="grafana-bench-"))
    backend = ChdbBackend(work / "chdb")
    try:
        schema_without_kafka(backend, cfg)
        loaded = load(backend, cfg, plan, work / "keyring.json")
        mart = cfg.clickhouse.mart_database
        counts = {e: backend.query(f"SELECT count() AS n FROM {mart}.{e} FINAL")[0]["n"] for e in ENTITIES}
        print(f"data: seed {args.seed}, scale {args.scale}: MART {counts}; load "
              + ", ".join(f"{e} {s:.1f}s" for e, s in loaded.items()))
        print(f"{'dashboard':<16} {'panel':<34} {'median ms':>9} {'max ms':>8} {'rows':>6}")
        sales_range = {"start": datetime(2025, 1, 1, tzinfo=UTC), "end": datetime(2026, 1, 1, tzinfo=UTC)}
        for spec in catalog.dashboards(cfg):
            data = dashboard_json(spec)
            kwargs: dict[str, Any] = sales_range if spec.uid.endswith("sales") else {}
            runs = [run_dashboard(backend, data, **kwargs) for _ in range(args.repeat)]
            name = spec.uid.removeprefix("probablyfresh-")
            for i, panel in enumerate(runs[0].panels):
                times = [r.panels[i].seconds * 1000 for r in runs]
                flag = "  > 200 ms" if statistics.median(times) > 200 else ""
                print(f"{name:<16} {panel.title:<34} {statistics.median(times):9.1f} {max(times):8.1f} "
                      f"{len(panel.rows):6d}{flag}")
            if args.snapshots:
                png_path, _ = write_snapshot(runs[-1], args.snapshots, name)
                print(f"  snapshot: {png_path}")
    finally:
        backend.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
