"""Ingest N records from a `_secure` topic into RAW and MART through the embedded engine's Kafka
table; print rows/s and the delay from the last produce to the last MART row visible.

Phase A (throughput): the warehouse is migrated first (its Kafka tables join their groups on an
empty topic), the purchases Kafka table is detached, N records are produced, and the table is
attached again: it drains the backlog through the final chain of views. (Migrating with the
backlog already there measured the migrations too: 006's tables began draining through 006's
views, and 008 and 010 detached them mid-block, so rows were polled twice.) The engine's CPU is
counted from the attach, with its Kafka counters (messages polled, rows rejected, rebalances).
Phase B (live): N more records while the table consumes. Then 10 single records (freshness).

Baseline in the same run: the produce rate of the same records (the ceiling the broker and
this client allow), so the ingest rate is also printed as a ratio of it.

    .venv/bin/python benchmarks/clickhouse_ingest.py --records 1000000
    # what the chain costs without the contract checks and exact decimals (not a shippable config)
    .venv/bin/python benchmarks/clickhouse_ingest.py --records 1000000 --skip-migrations 008 010
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test record builders (tests/)

from confluent_kafka.admin import AdminClient, NewTopic

from clickhouse.backend import ChdbBackend, trust_kafka_ca
from clickhouse.migrate import migrate
from clickhouse.render import KafkaTuning, render_migrations
from fresh.pipeline import PipelineConfig, load_pipeline_config
from fresh.settings import load_settings
from fresh.wait import wait_until
from stack.kafka_security import engine_connection
from tests import secure_records as sr


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _config(base: PipelineConfig, tag: str) -> PipelineConfig:
    return base.isolated(f"chbench{tag}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--partitions", type=int, default=None,
                    help="partitions of the benchmark topic, and the Kafka table gets as many consumers "
                         "(at most the number of cores: ClickHouse refuses more); default: the pipeline "
                         "config's scale.partitions and scale.clickhouse_consumers, as `up` creates them")
    ap.add_argument("--flush-ms", type=int, default=KafkaTuning.flush_interval_ms, help="kafka_flush_interval_ms")
    ap.add_argument("--block-size", type=int, default=KafkaTuning.max_block_size, help="kafka_max_block_size")
    ap.add_argument("--thread-per-consumer", type=int, choices=(0, 1), default=int(KafkaTuning.thread_per_consumer),
                    help="kafka_thread_per_consumer")
    ap.add_argument("--skip-migrations", nargs="+", default=[], metavar="NNN",
                    help="migrations not to apply, by number (an experiment on the chain's cost; the result is not "
                         "the shipped chain and the script says so)")
    args = ap.parse_args()
    settings = load_settings()
    cfg = _config(load_pipeline_config(settings.pipeline_config), uuid.uuid4().hex[:8])
    unknown = sorted(set(args.skip_migrations) - {m.name[:3] for m in render_migrations(cfg, "127.0.0.1:1")})
    if unknown:
        ap.error(f"--skip-migrations: no migration numbered {', '.join(unknown)} (clickhouse/migrations/)")
    topic = cfg.entity("purchases").secure_topic
    mart_t = f"{cfg.clickhouse.mart_database}.purchases"
    raw_t = f"{cfg.clickhouse.raw_database}.purchases"
    admin = AdminClient(settings.kafka("admin").config())
    partitions = args.partitions or cfg.scale.partitions
    for fut in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        fut.result()
    tuning = KafkaTuning(num_consumers=args.partitions, flush_interval_ms=args.flush_ms, max_block_size=args.block_size,
                         thread_per_consumer=bool(args.thread_per_consumer))
    producer = sr.SecureProducer(settings.kafka("admin"), **{"linger.ms": 50, "batch.size": 1_000_000,
                                                              "compression.type": "lz4"})

    def produce(prefix: str, count: int, ts0: int) -> float:
        t0 = time.monotonic()
        for doc in sr.bench_purchases(count, prefix, ts0):
            producer.send(topic, doc)
        producer.flush(600)
        return time.monotonic() - t0

    consumers = tuning.num_consumers or cfg.scale.clickhouse_consumers
    trust_kafka_ca(settings.kafka("clickhouse"))  # the engine reads over SASL_SSL
    backend = ChdbBackend(Path(tempfile.mkdtemp(prefix="chbench-")))

    def n(sql: str) -> int:
        return int(backend.query(sql)[0]["n"])

    def kafka_counters() -> dict[str, int]:
        rows = backend.query("SELECT event, value FROM system.events WHERE event IN ('KafkaMessagesPolled', "
                             "'KafkaRowsRejected', 'KafkaRebalanceAssignments')")
        return {str(r["event"]): int(r["value"]) for r in rows}

    # Phase A, throughput: the warehouse first, then a backlog of N records behind its detached Kafka table.
    migrations = render_migrations(cfg, engine_connection(settings, cfg), tuning=tuning)
    skipped = [m.name for m in migrations if m.name[:3] in args.skip_migrations]
    migrate(backend, [m for m in migrations if m.name not in skipped], cfg.clickhouse.raw_database)
    queue = f"{cfg.clickhouse.raw_database}.purchases_queue"
    backend.execute(f"DETACH TABLE {queue}")
    secs = produce("A", args.records, 1_763_000_000_000)
    produce_rate = args.records / secs
    print(f"topic {topic}: {partitions} partition(s); Kafka table: {consumers} consumer(s), {tuning}")
    if skipped:
        print(f"NOT the shipped chain: migrations {', '.join(skipped)} not applied")
    print(f"produced {args.records} records in {secs:.1f}s ({produce_rate:,.0f} rows/s, the baseline)", flush=True)

    before = kafka_counters()
    t_att, cpu_att = time.monotonic(), _cpu_s()
    backend.execute(f"ATTACH TABLE {queue}")
    wait_until(lambda: n(f"SELECT count() AS n FROM {mart_t}") >= args.records, timeout_s=args.timeout,
               what=f"{args.records} rows in {mart_t}", interval_s=0.05, max_interval_s=0.2)
    wall, cpu = time.monotonic() - t_att, _cpu_s() - cpu_att
    counters = {k: v - before.get(k, 0) for k, v in kafka_counters().items()}
    span = backend.query(f"SELECT toUnixTimestamp64Milli(min(ingested_at)) AS a, "
                         f"toUnixTimestamp64Milli(max(ingested_at)) AS b FROM {mart_t}")[0]
    span_s = max((int(span["b"]) - int(span["a"])) / 1000, 1e-3)
    print(f"backlog drained into RAW ({n(f'SELECT count() AS n FROM {raw_t}')} rows) and MART: "
          f"{args.records / span_s:,.0f} rows/s (first to last MART row, {span_s:.1f}s; "
          f"{args.records / span_s / produce_rate:.2f}x the produce rate); "
          f"{wall:.1f}s from attach incl. consumer group join", flush=True)
    # RAW's ingested_at is now64(3) of the insert: one value per block the Kafka table wrote
    blocks = backend.query(f"SELECT count() AS b, max(c) AS m FROM (SELECT ingested_at, count() AS c "
                           f"FROM {raw_t} GROUP BY ingested_at)")[0]
    print(f"blocks: {blocks['b']} ({args.records / max(int(blocks['b']), 1):,.0f} rows on average, at most "
          f"{blocks['m']}); messages polled {counters.get('KafkaMessagesPolled', 0):,}, rows rejected "
          f"{counters.get('KafkaRowsRejected', 0):,}, rebalances {counters.get('KafkaRebalanceAssignments', 0)}",
          flush=True)
    # chdb runs in this process: its CPU time is this process's. Rows per CPU-second do not depend on how
    # many other processes share the cores (the rate above does).
    print(f"cpu: {cpu:.1f} CPU-s of this process (the engine) from attach to drained: "
          f"{args.records / cpu:,.0f} rows per CPU-second; {cpu / span_s:.2f} cores busy on average over the "
          f"drain", flush=True)

    # Phase B, live: N more records produced while the Kafka tables consume.
    t_live = time.monotonic()
    secs = produce("B", args.records, 1_764_000_000_000)
    t_last = t_live + secs
    wait_until(lambda: n(f"SELECT count() AS n FROM {mart_t}") >= 2 * args.records, timeout_s=args.timeout,
               what=f"{2 * args.records} rows in {mart_t}", interval_s=0.05, max_interval_s=0.2)
    t_mart = time.monotonic()
    print(f"live: {args.records} records produced in {secs:.1f}s; all in MART {t_mart - t_live:.1f}s after the "
          f"first produce ({args.records / (t_mart - t_live):,.0f} rows/s end to end); "
          f"last produce -> last MART row visible: {t_mart - t_last:.2f}s", flush=True)

    # Steady state freshness: single records at a low rate.
    delays = []
    for doc in sr.bench_purchases(10, "F", 1_765_000_000_000):
        pid = doc["purchase_id"]
        producer.send(topic, doc)
        producer.flush(10)
        ts = time.monotonic()
        wait_until(lambda pid=pid: n(f"SELECT count() AS n FROM {mart_t} WHERE purchase_id = '{pid}'"),
                   timeout_s=30, what=f"{pid} in MART", interval_s=0.02, max_interval_s=0.05)
        delays.append(time.monotonic() - ts)
    delays.sort()
    print(f"steady-state freshness (produce -> MART visible, 10 single records): "
          f"median {delays[5]:.2f}s, max {delays[-1]:.2f}s")
    backend.close()


if __name__ == "__main__":
    main()
