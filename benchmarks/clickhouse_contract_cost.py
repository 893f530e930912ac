"""The CPU cost of migration 008's contract checks: the RAW view's SELECT (what each Kafka block
runs before the RAW insert) as 006 created it and as 008 changed it, over the same N purchases in
the documented `_secure` shape, on the embedded engine, no broker (so consumer-group joins and
broker load do not blur it). Prints rows/s per round and the median ratio.

    .venv/bin/python benchmarks/clickhouse_contract_cost.py --records 200000 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    cfg = load_pipeline_config(load_settings().pipeline_config).isolated("chcost")
    work = Path(tempfile.mkdtemp(prefix="chcost-"))
    backend = ChdbBackend(work / "chdb")
    migrations = render_migrations(cfg, "127.0.0.1:1")  # never consumes: nothing is produced
    before = next(m for m in migrations if m.name == "006_kafka_ingest")
    migrate(backend, migrations, cfg.clickhouse.raw_database)
    raw = cfg.clickhouse.raw_database
    queue = f"{raw}.purchases_queue"
    old_select = next(s for s in before.statements if f"{raw}.purchases_mv TO" in s).split(" AS\n", 1)[1]
    new_select = backend.query(
        f"SELECT as_select FROM system.tables WHERE database = '{raw}' AND name = 'purchases_mv'")[0]["as_select"]

    data = sr.write_payloads_jsonl(work / "purchases.jsonl", sr.bench_purchases(args.records))
    source = (f"(SELECT '{{\"id\": \"x\"}}' AS _key, payload, 't' AS _topic, toUInt64(0) AS _partition, "
              f"toUInt64(rowNumberInAllBlocks()) AS _offset, now() AS _timestamp, '' AS _error "
              f"FROM file('{data}', 'JSONEachRow', 'payload String'))")
    for name in ("old", "new"):
        backend.execute(f"CREATE TABLE {raw}.cost_{name} AS {raw}.purchases ENGINE = Null")

    ratios = []
    for r in range(1, args.rounds + 1):
        rates = {}
        for name, select in (("006", old_select), ("008", new_select)):
            t0 = time.monotonic()
            target = "cost_old" if name == "006" else "cost_new"
            columns = "" if name == "008" else " (* EXCEPT unknown_fields)"
            backend.execute(f"INSERT INTO {raw}.{target}{columns} {select.replace(queue, source)}")
            rates[name] = args.records / (time.monotonic() - t0)
        ratios.append(rates["006"] / rates["008"])
        print(f"round {r}: RAW view SELECT over {args.records} purchases: 006 {rates['006']:,.0f} rows/s, "
              f"008 {rates['008']:,.0f} rows/s (008 costs {ratios[-1]:.2f}x)", flush=True)
    print(f"median: 008's RAW view costs {statistics.median(ratios):.2f}x 006's")
    backend.close()


if __name__ == "__main__":
    main()
