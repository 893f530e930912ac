"""Benchmark: purchases per second into MongoDB through the bulk path vs a naive insert_one loop.

    .venv/bin/python benchmarks/generator_bulk.py                      # 1,000,000 purchases
    .venv/bin/python benchmarks/generator_bulk.py --purchases 200000 --naive-sample 20000
    .venv/bin/python benchmarks/generator_bulk.py --purchases 1000000 --mongo-purchases 250000

--mongo-purchases caps what is written to MongoDB (generation still covers --purchases): the local
stack's in-memory server needs about 8 KB of its 4 GB heap per purchase (document + oplog entry),
so 1,000,000 purchases do not fit there.

Three measurements in one run, each on a fresh database that is dropped right afterwards:
  1. generation only (no MongoDB): where the time goes on the client;
  2. the bulk path (`generator.seed`: unordered ReplaceOne upserts, --batch-size, --workers in flight);
  3. a naive loop of `insert_one` per document over --naive-sample purchases (its rate is per
     document, so it extrapolates to any size; running it on 1,000,000 would take most of an hour);
  4. the server alone: the bulk path over --naive-sample documents built beforehand (no generation
     in the timed part), i.e. the ceiling the server sets.
Peak memory: the process's peak RSS (getrusage) after each phase, and tracemalloc's peak of Python
allocations while streaming (measured on a separate pass, since tracing slows generation down).

The local Mongo server (mongo-java-server) keeps an unbounded in-memory oplog, so each phase also
deletes the oplog entries of its own database: otherwise every benchmark would leave its documents
in the shared server's heap until it restarts.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import tracemalloc
import uuid
from typing import Any

from pymongo import MongoClient

from fresh.pipeline import load_pipeline_config
from fresh.settings import load_settings
from generator.domain import PURCHASES_PER_SCALE, Domain, Plan
from generator.mongo import connect
from generator.seed import MongoSink, seed


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def drop(client: MongoClient[dict[str, Any]], name: str) -> None:
    client.drop_database(name)
    client["local"]["oplog.rs"].delete_many({"ns": {"$regex": f"^{name}\\."}})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--purchases", type=int, default=1_000_000)
    ap.add_argument("--mongo-purchases", type=int, default=None,
                    help="purchases written through the bulk path (default: --purchases)")
    ap.add_argument("--naive-sample", type=int, default=20_000)
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()

    settings = load_settings()
    config = load_pipeline_config(settings.pipeline_config)
    # Enough customers for the purchases to spread over, as `--scale` would make.
    scale = max(1, args.purchases // PURCHASES_PER_SCALE)
    plan = Plan(seed=args.seed, scale=scale)
    n = args.purchases
    n_mongo = min(n, args.mongo_purchases or n)
    results: dict[str, Any] = {"purchases_generated": n, "purchases_bulk": n_mongo,
                               "naive_sample": args.naive_sample,
                               "batch_size": args.batch_size, "workers": args.workers}
    rss0 = peak_rss_mb()

    # 1. generation only
    domain = Domain(plan)
    t = time.perf_counter()
    for _ in domain.stream("purchases", 0, n):
        pass
    results["generate_docs_per_s"] = n / (time.perf_counter() - t)
    results["peak_rss_mb_after_generate"] = peak_rss_mb()

    tracemalloc.start()
    for _ in Domain(plan).stream("purchases", 0, min(n, 50_000)):
        pass
    results["tracemalloc_peak_mb_streaming_50k"] = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()

    client = connect(settings, timeout_s=10)
    tag = uuid.uuid4().hex[:8]
    try:
        # 2. bulk path
        name = f"bench_gen_bulk_{tag}"
        try:
            sink = MongoSink(client[name], config, workers=args.workers)
            sink.ensure_indexes()
            t = time.perf_counter()
            bulk_plan = Plan(seed=args.seed, scale=max(1, n_mongo // PURCHASES_PER_SCALE))
            report = seed(Domain(bulk_plan), [sink], batch_size=args.batch_size, entities=("purchases",))
            elapsed = time.perf_counter() - t
            assert report.counts["purchases"] == bulk_plan.counts["purchases"]
            n_mongo = report.counts["purchases"]
            stored = client[name][config.entity("purchases").collection].estimated_document_count()
            assert stored == n_mongo, f"stored {stored} of {n_mongo}"
            results["purchases_bulk"] = n_mongo
            results["bulk_docs_per_s"] = n_mongo / elapsed
            results["bulk_seconds"] = elapsed
            results["peak_rss_mb_after_bulk"] = peak_rss_mb()
        finally:
            drop(client, name)

        # 3. naive insert_one loop (same documents, same indexes)
        name = f"bench_gen_naive_{tag}"
        try:
            db = client[name]
            MongoSink(db, config, workers=1).ensure_indexes()
            collection = db[config.entity("purchases").collection]
            m = min(args.naive_sample, n)
            docs = Domain(plan).stream("purchases", 0, m)
            t = time.perf_counter()
            for doc in docs:
                collection.insert_one(doc)
            elapsed = time.perf_counter() - t
            results["naive_docs_per_s"] = m / elapsed
            results["naive_extrapolated_seconds_for_bulk_size"] = n_mongo / results["naive_docs_per_s"]
        finally:
            drop(client, name)

        # 4. server alone: documents built before the clock starts (a sample: they sit in memory)
        name = f"bench_gen_server_{tag}"
        try:
            sink = MongoSink(client[name], config, workers=args.workers)
            sink.ensure_indexes()
            m = min(args.naive_sample, n)
            prebuilt = list(Domain(plan).stream("purchases", 0, m))
            t = time.perf_counter()
            for i in range(0, m, args.batch_size):
                sink.write("purchases", prebuilt[i:i + args.batch_size])
            sink.close()
            results["server_only_bulk_docs_per_s"] = m / (time.perf_counter() - t)
            del prebuilt
        finally:
            drop(client, name)
    finally:
        client.close()

    results["bulk_vs_naive"] = results["bulk_docs_per_s"] / results["naive_docs_per_s"]
    results["peak_rss_mb_at_start"] = rss0
    for key, value in results.items():
        print(f"{key:40s} {value:,.1f}" if isinstance(value, float) else f"{key:40s} {value}")
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in results.items()}))


if __name__ == "__main__":
    main()
