"""The CPU cost of migration 008's contract checks: the RAW view's SELECT (what each Kafka block
runs before the RAW insert) as 006 created it and as 008 changed it, over the same N purchases in
the documented `_secure` shape, on the embedded engine, no broker (so consumer-group joins and
broker load do not blur it), in one thread (`max_threads=1`: a Kafka consumer's block runs its
views in its own thread). Prints the engine CPU per row per round, and with `--parts` what each
piece of the checks costs alone (the same expressions, from clickhouse/contract.py).

    .venv/bin/python benchmarks/clickhouse_contract_cost.py --records 200000 --rounds 3
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test record builders (tests/)

from clickhouse import contract
from clickhouse.backend import ChdbBackend
from clickhouse.migrate import migrate
from clickhouse.render import entity_context, render_migrations
from fresh.pipeline import load_pipeline_config
from fresh.settings import load_settings
from tests import secure_records as sr


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--parts", action="store_true", help="also the CPU per row of each piece of the checks")
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
    backend.execute(f"CREATE TABLE {raw}.cost_src ENGINE = Memory AS "
                    f"SELECT payload FROM file('{data}', 'JSONEachRow', 'payload String')")
    source = (f"(SELECT '{{\"id\": \"x\"}}' AS _key, payload, 't' AS _topic, toUInt64(0) AS _partition, "
              f"toUInt64(rowNumberInAllBlocks()) AS _offset, now() AS _timestamp, '' AS _error "
              f"FROM {raw}.cost_src)")
    for name in ("old", "new"):
        backend.execute(f"CREATE TABLE {raw}.cost_{name} AS {raw}.purchases ENGINE = Null")

    def cpu_per_row(sql: str) -> float:
        """µs of engine CPU (this process: chdb runs in it) per record for `sql`, in one thread."""
        cpu0 = _cpu_s()
        backend.execute(f"{sql} SETTINGS max_threads=1")
        return (_cpu_s() - cpu0) / args.records * 1e6

    ratios = []
    for r in range(1, args.rounds + 1):
        cost = {}
        for name, select in (("006", old_select), ("008", new_select)):
            target = "cost_old" if name == "006" else "cost_new"
            columns = "" if name == "008" else " (* EXCEPT unknown_fields)"
            cost[name] = cpu_per_row(f"INSERT INTO {raw}.{target}{columns} {select.replace(queue, source)}")
        ratios.append(cost["008"] / cost["006"])
        print(f"round {r}: RAW view SELECT over {args.records} purchases, engine CPU per row: "
              f"006 {cost['006']:.1f} µs, 008 {cost['008']:.1f} µs (008 costs {ratios[-1]:.2f}x)", flush=True)
    print(f"median: 008's RAW view costs {statistics.median(ratios):.2f}x 006's")

    if args.parts:  # each piece alone over the same payloads, hashed so that nothing is skipped
        e = next(x for x in entity_context(cfg) if x["name"] == "purchases")
        kv = contract.kv_sql()
        pieces = {
            "the payload's tuple (006)": f"JSONExtract(payload, '{e['payload_type']}')",
            "the top-level map (kv)": kv,
            "008's contract rules, kv included": f"{e['contract_sql']}",
            "decimal text of total (regex)": contract.decimal_text("total"),
            "decimal texts of unit_price (regex)": contract.decimal_texts("unit_price"),
            "decimal texts of line_total (regex)": contract.decimal_texts("line_total"),
        }
        for name, expr in pieces.items():
            body = f"SELECT payload, toUInt8(0) AS deleted, {kv} AS kv FROM {raw}.cost_src"
            us = min(cpu_per_row(f"SELECT sum(cityHash64({expr})) FROM ({body})") for _ in range(2))
            print(f"  {name}: {us:.2f} µs per row")
    backend.close()


if __name__ == "__main__":
    main()
