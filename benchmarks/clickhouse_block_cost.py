"""What a Kafka block costs the engine: N purchases in the documented `_secure` shape go through the
shipped chain (the RAW view's SELECT into RAW, whose views fill MART, `rejects` and
`schema_drift`), in blocks of each given size, on the embedded engine without a broker. Prints the
engine CPU per row for each block size; the largest block size is the baseline, and the
difference per extra block is the fixed cost of one block (planning the chain's views, the parts
each insert makes, their merges).

    .venv/bin/python benchmarks/clickhouse_block_cost.py --records 200000 --blocks 200000 50000 10000 2000
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test record builders (tests/)

from clickhouse.backend import ChdbBackend
from clickhouse.migrate import migrate
from clickhouse.render import render_migrations
from fresh.pipeline import load_pipeline_config
from fresh.settings import load_settings
from tests import secure_records as sr


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--blocks", type=int, nargs="+", default=[200_000, 50_000, 10_000, 2_000],
                    help="block sizes (rows per insert), the largest first")
    args = ap.parse_args()
    cfg = load_pipeline_config(load_settings().pipeline_config).isolated("chblock")
    work = Path(tempfile.mkdtemp(prefix="chblock-"))
    backend = ChdbBackend(work / "chdb")
    migrations = render_migrations(cfg, "127.0.0.1:1")  # never consumes: nothing is produced
    migrate(backend, migrations, cfg.clickhouse.raw_database)
    raw, mart = cfg.clickhouse.raw_database, cfg.clickhouse.mart_database
    view = backend.query(f"SELECT as_select FROM system.tables WHERE database = '{raw}' AND name = 'purchases_mv'")
    select = view[0]["as_select"]

    data = sr.write_payloads_jsonl(work / "purchases.jsonl", sr.bench_purchases(args.records))
    backend.execute(f"CREATE TABLE {raw}.block_src (n UInt64, payload String) ENGINE = Memory")
    backend.execute(f"INSERT INTO {raw}.block_src SELECT rowNumberInAllBlocks(), payload "
                    f"FROM file('{data}', 'JSONEachRow', 'payload String')")
    one_block = f"max_insert_block_size={args.records}, min_insert_block_size_rows={args.records}"

    per_row: dict[int, float] = {}
    for size in args.blocks:
        cpu0, t0 = _cpu_s(), time.monotonic()
        for start in range(0, args.records, size):
            source = (f"(SELECT '{{\"id\": \"x\"}}' AS _key, payload, 't' AS _topic, toUInt64(0) AS _partition, "
                      f"n AS _offset, now() AS _timestamp, '' AS _error FROM {raw}.block_src "
                      f"WHERE n >= {start} AND n < {start + size})")
            backend.execute(f"INSERT INTO {raw}.purchases {select.replace(f'{raw}.purchases_queue', source)} "
                            f"SETTINGS {one_block}, max_block_size={args.records}")
        cpu, wall = _cpu_s() - cpu0, time.monotonic() - t0
        landed = int(backend.query(f"SELECT count() AS n FROM {mart}.purchases")[0]["n"])
        assert landed == args.records, f"MART holds {landed} of {args.records} purchases"
        per_row[size] = cpu / args.records
        blocks = -(-args.records // size)
        print(f"blocks of {size:,} rows ({blocks} blocks): {cpu:.1f} CPU-s, {per_row[size] * 1e6:.1f} µs of engine "
              f"CPU per row, {args.records / wall:,.0f} rows/s in one thread", flush=True)
        backend.execute(f"TRUNCATE TABLE {raw}.purchases")
        backend.execute(f"TRUNCATE TABLE {mart}.purchases")
    base = args.blocks[0]
    for size in args.blocks[1:]:
        extra = -(-args.records // size) - -(-args.records // base)
        if extra > 0:
            fixed = (per_row[size] - per_row[base]) * args.records / extra
            print(f"blocks of {size:,} vs {base:,}: {fixed * 1000:.0f} ms of engine CPU per extra block; "
                  f"{per_row[size] / per_row[base]:.2f}x the CPU per row")
    backend.close()


if __name__ == "__main__":
    main()
