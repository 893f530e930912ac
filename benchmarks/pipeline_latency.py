"""End-to-end latency of the local pipeline: from a MongoDB write to the row visible in MART.

Brings the pipeline up with the same library call as `freshctl up` (reusing what runs), then
for each rate writes changes to MongoDB for `--seconds`: half new purchases, half status updates of
existing ones, each stamped with `updated_at` = the wall-clock time just before its write (ms). A
watcher reads every row that reaches MART as it lands (`ingested_at`, the engine's clock on the same
host; see MartWatcher) and matches it by (purchase_id, updated_at). Per rate it prints p50/p95/p99/max of
`ingested_at - updated_at`, the rate actually written, rows never seen (and writes superseded by a
later write of the same purchase before the connector looked the document up), and whether the delay grew
during the phase (median of the last quarter more than 1 s above the first quarter's: the
pipeline did not keep up).

    .venv/bin/python benchmarks/pipeline_latency.py --rates 100 1000 --seconds 30
    .venv/bin/python benchmarks/pipeline_latency.py --rates 1500 2000 3000 --seconds 30   # the ceiling
"""

from __future__ import annotations

import argparse
import random
import statistics
import threading
import time
from datetime import UTC, datetime

from pymongo import InsertOne, UpdateOne

from clickhouse.backend import Backend, open_backend
from fresh.clients import mongo_client
from fresh.pipeline import PipelineConfig, load_pipeline_config
from fresh.settings import load_settings
from generator.changes import ChangeRunner, Pacer
from generator.domain import Domain, Plan, purchase_id
from stack.pipeline import UpOptions, up

TICKS_PER_S = 100


class MartWatcher(threading.Thread):
    """Collects (purchase_id, updated_at ms) -> ingested_at ms for every purchases row that reaches MART.

    It reads RAW's rows that pass validation (`empty(broken_rules)`, exactly those MART's view
    takes): MART's row is inserted by the materialized view in the same insert as RAW's, so it
    becomes visible at the same moment, but ReplacingMergeTree may merge an older version away
    before a poll sees it, while RAW keeps every row."""

    def __init__(self, backend: Backend, cfg: PipelineConfig):
        super().__init__(daemon=True)
        self.backend, self.table = backend, f"{cfg.clickhouse.raw_database}.{cfg.entity('purchases').name}"
        self.seen: dict[tuple[str, int], int] = {}
        self.stop = threading.Event()
        # Watermarks on the Kafka offsets, not on ingested_at: a block is stamped when its insert starts and
        # becomes visible when it commits, seconds later under load; a partition's offsets become visible in order.
        rows = backend.query(f"SELECT _partition AS p, max(_offset) AS m FROM {self.table} GROUP BY _partition")
        self.watermarks = {int(r["p"]): int(r["m"]) for r in rows}

    def run(self) -> None:
        while not self.stop.is_set():
            self.poll()
            self.stop.wait(0.5)  # the watcher's polling period; latencies come from ingested_at, not from it

    def poll(self) -> None:
        parts, marks = list(self.watermarks), [self.watermarks[p] for p in self.watermarks]
        rows = self.backend.query(
            f"SELECT purchase_id AS id, updated_at AS u, toUnixTimestamp64Milli(ingested_at) AS i, _offset AS o, "
            f"_partition AS p FROM {self.table} WHERE toInt64(_offset) > transform(_partition, {parts}, {marks}, -1) "
            f"AND empty(broken_rules)")
        for r in rows:
            self.seen.setdefault((str(r["id"]), int(r["u"])), int(r["i"]))
            self.watermarks[int(r["p"])] = max(self.watermarks.get(int(r["p"]), -1), int(r["o"]))


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_phase(rate: float, seconds: float, purchases: object, domain: Domain, runner: ChangeRunner,
              watcher: MartWatcher, rng: random.Random, drain_s: float) -> dict[str, object]:
    coll = purchases  # a pymongo Collection
    written: list[tuple[str, int]] = []
    pacer = Pacer(TICKS_PER_S)
    per_tick, carry = rate / TICKS_PER_S, 0.0
    t0 = time.monotonic()
    tick = 0
    while time.monotonic() - t0 < seconds:
        pacer.wait_turn(tick)
        tick += 1
        carry += per_tick
        n, carry = int(carry), carry - int(carry)
        if not n:
            continue
        now = datetime.now(UTC)
        ms = int(now.timestamp() * 1000)
        now = datetime.fromtimestamp(ms / 1000, UTC)
        ops: list[InsertOne | UpdateOne] = []  # type: ignore[type-arg]
        existing = runner._next_purchase  # updates only target purchases written before this unordered bulk
        for k in range(n):
            if k % 2 == 0 or runner._next_purchase < 10:
                index = runner._next_purchase
                runner._next_purchase += 1
                doc = domain.purchase(index, customers=runner._customer_count)
                doc["status"], doc["purchased_at"], doc["updated_at"] = "completed", now, now
                ops.append(InsertOne(doc))
                written.append((str(doc["_id"]), ms))
            else:
                key = purchase_id(rng.randrange(existing))
                ops.append(UpdateOne({"_id": key}, {"$set": {"status": rng.choice(("returned", "cancelled")),
                                                             "updated_at": now}}))
                written.append((key, ms))
        coll.bulk_write(ops, ordered=False)  # type: ignore[attr-defined]
    elapsed = time.monotonic() - t0
    # Updates of a deleted or twice-updated-in-one-ms purchase never show: count only what can.
    deadline = time.monotonic() + drain_s
    while time.monotonic() < deadline and not all(w in watcher.seen for w in written[-200:]):
        time.sleep(0.5)  # benchmark drain: poll the watcher until the last writes are visible
    lat = [(watcher.seen[w] - w[1]) / 1000 for w in written if w in watcher.seen]
    # The connector reads an update's full document when it reads the event (updateLookup, as on
    # MongoDB): when the same purchase was written again before that, MART shows the later state
    # only. Such a write is "superseded", not missing: the purchase's last write must arrive.
    last = {key: i for i, (key, _ms) in enumerate(written)}
    unseen = [i for i, w in enumerate(written) if w not in watcher.seen]
    missing = sum(1 for i in unseen if last[written[i][0]] == i)
    superseded = len(unseen) - missing
    quarter = max(1, len(lat) // 4)
    first, last = statistics.median(lat[:quarter]), statistics.median(lat[-quarter:])
    return {"rate": rate, "written": len(written), "written_per_s": len(written) / elapsed, "missing": missing,
            "superseded": superseded, "p50": _pct(lat, 0.50), "p95": _pct(lat, 0.95), "p99": _pct(lat, 0.99),
            "max": max(lat),
            "first_q_p50": first, "last_q_p50": last, "kept_up": last <= first + 1.0 and missing == 0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", type=float, nargs="+", default=[100, 1000])
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--drain", type=float, default=120, help="seconds to wait for the last writes after a phase")
    args = ap.parse_args()
    settings = load_settings()
    cfg = load_pipeline_config(settings.pipeline_config)
    t = time.monotonic()
    result = up(settings, UpOptions(), progress=lambda line: print(f"  up: {line}", flush=True))
    print(f"up: {time.monotonic() - t:.1f}s (started: {', '.join(result.started) or '-'})", flush=True)
    backend = open_backend(settings)
    client = mongo_client(settings)
    try:
        db = client[cfg.mongodb.database]
        domain = Domain(Plan(seed=42))
        runner = ChangeRunner(db, cfg, domain)
        watcher = MartWatcher(backend, cfg)
        watcher.start()
        print(f"{'rate/s':>8} {'written/s':>9} {'changes':>8} {'missing':>7} {'supers.':>7} {'p50 s':>7} {'p95 s':>7} "
              f"{'p99 s':>7} "
              f"{'max s':>7} {'q1 p50':>7} {'q4 p50':>7}  kept up", flush=True)
        for rate in args.rates:
            r = run_phase(rate, args.seconds, db[cfg.entity("purchases").collection], domain, runner, watcher,
                          random.Random(int(rate)), args.drain)  # noqa: S311 - benchmark data
            print(f"{r['rate']:>8.0f} {r['written_per_s']:>9.0f} {r['written']:>8} {r['missing']:>7} "
                  f"{r['superseded']:>7} "
                  f"{r['p50']:>7.2f} {r['p95']:>7.2f} {r['p99']:>7.2f} {r['max']:>7.2f} {r['first_q_p50']:>7.2f} "
                  f"{r['last_q_p50']:>7.2f}  {'yes' if r['kept_up'] else 'NO'}", flush=True)
        watcher.stop.set()
    finally:
        client.close()
        backend.close()


if __name__ == "__main__":
    main()
