"""PII processor throughput against the real broker, one instance, on the same data in one run:

  processor    smt.processor.Processor: exactly-once transactions, policy, guard; the transform's
               native fast path (smt/native, Rust) with the Python path for unusual records
  python       the same processor with the pure-Python transform (ProcessorOptions(native=False))
  passthrough  the same transactional consume/produce loop with no transform (the ceiling)
  naive        per-record Fernet + json + a synchronous send per record (a simple producer script)
  quix         the same Transformer inside a quix-streams app with exactly-once, if a venv with
               quixstreams exists (--quix-python; kept out of the project's dependencies)

Prints msgs/s and MB/s (input bytes) per run, ratios, and a cProfile summary of the processor.
Every processor run starts cold, like a fresh process: the phone-number and blind-index caches are
emptied first (the data are the same in every run, so warm caches would flatter later runs).

    .venv/bin/python benchmarks/smt_throughput.py                      # 100k records
    .venv/bin/python benchmarks/smt_throughput.py --records 20000 --quix-python /tmp/quixvenv/bin/python
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test record builders (tests/)
from typing import Any

import yaml
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from cryptography.fernet import Fernet

from fresh.kafka_connection import KafkaConnection
from fresh.pipeline import PipelineConfig
from fresh.settings import load_settings
from smt.keyring import KeyringSource
from smt.normalize import normalize_phone
from smt.processor import Processor, ProcessorOptions, ensure_topics
from smt.transform import RecordError
from tests.cdc_records import mixed_records

HERE = Path(__file__).resolve().parent


class Passthrough(Processor):
    def transform_batch(self, topic: str, values: list[bytes | None]) -> list[bytes | RecordError | None]:
        return list(values)


def pipeline_for(raw: dict[str, Any], suffix: str) -> PipelineConfig:
    raw = json.loads(json.dumps(raw))
    raw["kafka"]["secure_suffix"] = suffix
    raw["kafka"]["dlq_topic"] = raw["kafka"]["topic_prefix"] + ".dlq" + suffix
    return PipelineConfig.model_validate(raw)


def timed_run(cls: type[Processor], cfg: PipelineConfig, ring: KeyringSource, bootstrap: KafkaConnection, n: int,
              batch: int, profile: cProfile.Profile | None = None, native: bool = True) -> dict[str, float]:
    tag = uuid.uuid4().hex[:6]
    ensure_topics(cfg, bootstrap)
    opts = ProcessorOptions(kafka=bootstrap, instance_id=f"bench-{tag}", group_id=f"bench-{tag}",
                            batch_size=batch, counters_interval_s=0, native=native)
    normalize_phone.cache_clear()
    proc = cls(cfg, KeyringSource(ring.path), opts)  # a fresh keyring object: empty blind-index cache
    stop = threading.Event()
    watcher = threading.Thread(target=lambda: _stop_when(proc, n, stop), daemon=True)
    watcher.start()
    if profile:
        profile.enable()
    c = proc.run(stop)
    if profile:
        profile.disable()
    seconds = c.last_commit_at - c.first_record_at
    return {"records": c.consumed, "seconds": seconds, "bytes": c.bytes_in, "dlq": c.dlq}


def _stop_when(proc: Processor, n: int, stop: threading.Event) -> None:
    deadline = time.monotonic() + 600
    while proc.counters.consumed < n and time.monotonic() < deadline:
        stop.wait(0.05)  # benchmark watcher, not a test wait
    while proc.counters.last_commit_at < proc.counters.first_record_at or proc.counters.transactions == 0:
        stop.wait(0.05)
    stop.set()


def naive(cfg: PipelineConfig, bootstrap: KafkaConnection, n: int) -> dict[str, float]:
    """What a first script looks like: Fernet per field per record, json, produce + flush per record."""
    tag = uuid.uuid4().hex[:6]
    consumer = Consumer(bootstrap.config({"group.id": f"naive-{tag}", "auto.offset.reset": "earliest"}))
    producer = Producer(bootstrap.config())
    fernet = Fernet(Fernet.generate_key())
    consumer.subscribe(cfg.cdc_topics)
    done, size, start = 0, 0, 0.0
    while done < n:
        msg = consumer.poll(1.0)
        if msg is None or msg.error():
            continue
        if not start:
            start = time.perf_counter()
        value = msg.value()
        out = None
        if value is not None:
            size += len(value)
            doc = json.loads(value)
            for holder in (doc, doc.get("customer") if isinstance(doc.get("customer"), dict) else None):
                for f in ("email", "phone", "first_name", "last_name", "birth_date", "manager"):
                    if holder and isinstance(holder.get(f), str):
                        holder[f] = fernet.encrypt(holder[f].strip().lower().encode()).decode()
            out = json.dumps(doc).encode()
        producer.produce(f"{msg.topic()}_naive", out, msg.key())
        producer.flush()
        done += 1
    seconds = time.perf_counter() - start
    consumer.close()
    return {"records": done, "seconds": seconds, "bytes": size, "dlq": 0}


def quix(python: str, cfg_path: Path, keyring: Path, bootstrap: KafkaConnection, n: int) -> dict[str, float] | str:
    cmd = [python, str(HERE / "smt_quix_app.py"), "--pipeline", str(cfg_path), "--keyring", str(keyring),
           "--bootstrap", bootstrap.bootstrap_servers, "--records", str(n)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=HERE.parent, check=False)
    if res.returncode != 0:
        return f"quix run failed: {res.stderr.strip().splitlines()[-1] if res.stderr.strip() else res.returncode}"
    result: dict[str, float] = json.loads(res.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--naive-records", type=int, default=3_000, help="the naive loop is slow; its rate is per second")
    ap.add_argument("--batch-size", type=int, default=5_000)
    ap.add_argument("--repeat", type=int, default=3, help="passthrough/processor runs, alternated; median reported")
    ap.add_argument("--quix-python", default="", help="python of a venv with quixstreams installed")
    args = ap.parse_args()

    settings = load_settings()
    bootstrap = settings.kafka("admin")
    raw = yaml.safe_load(settings.pipeline_config.read_text(encoding="utf-8"))
    raw["kafka"]["topic_prefix"] = f"bench{uuid.uuid4().hex[:8]}"
    base = PipelineConfig.model_validate(raw)
    admin = AdminClient(bootstrap.config())
    for fut in admin.create_topics([NewTopic(t, num_partitions=3, replication_factor=1)
                                    for t in base.cdc_topics]).values():
        fut.result(30)
    producer = Producer(bootstrap.config({"partitioner": "murmur2_random", "linger.ms": 20}))
    size = 0
    for i, r in enumerate(mixed_records(base, args.records, seed=42)):
        producer.produce(r.topic, r.value, r.key)
        size += len(r.value or b"")
        if i % 50_000 == 0:
            producer.flush()
    producer.flush()
    print(f"input: {args.records} records, {size / 1e6:.1f} MB, mean {size / args.records:.0f} B/record, "
          f"topics {base.topic_prefix if hasattr(base, 'topic_prefix') else raw['kafka']['topic_prefix']}.*")

    try:
        tmp = Path(tempfile.mkdtemp(prefix="pf-bench-"))
        ring = KeyringSource(tmp / "keyring.json", allow_unwrapped=True)  # throwaway keys of a benchmark
        ring.generate()
        results: dict[str, dict[str, float] | str] = {}
        runs: dict[str, list[dict[str, float]]] = {"passthrough": [], "processor": [], "python": []}
        for i in range(args.repeat):  # alternated, so load from other tenants hits both alike
            runs["passthrough"].append(timed_run(Passthrough, pipeline_for(raw, f"_pass{i}"), ring, bootstrap,
                                                 args.records, args.batch_size))
            runs["processor"].append(timed_run(Processor, pipeline_for(raw, f"_secure{i}"), ring, bootstrap,
                                               args.records, args.batch_size))
            runs["python"].append(timed_run(Processor, pipeline_for(raw, f"_py{i}"), ring, bootstrap,
                                            args.records, args.batch_size, native=False))
        for name, rs in runs.items():
            print(f"{name:<12} runs msgs/s: " + ", ".join(f"{r['records'] / r['seconds']:.0f}" for r in rs))
            results[name] = sorted(rs, key=lambda r: r["records"] / r["seconds"])[len(rs) // 2]
        # The broker slows as a run goes on (all series alike), so each round's own ratio is also shown.
        pairs = zip(runs["passthrough"], runs["processor"], strict=True)
        paired = sorted(p["seconds"] / q["seconds"] for p, q in pairs)
        print("processor / passthrough per round: " + ", ".join(f"{x:.2f}" for x in paired)
              + f" (median {paired[len(paired) // 2]:.2f})")
        results["naive"] = naive(base, bootstrap, args.naive_records)
        if args.quix_python:
            cfg_path = tmp / "pipeline.yaml"
            cfg_path.write_text(yaml.safe_dump(raw))
            results["quix"] = quix(args.quix_python, cfg_path, tmp / "keyring.json", bootstrap, args.records)
        else:
            results["quix"] = "skipped (no --quix-python)"

        print(f"{'run (median)':<12} {'records':>8} {'seconds':>8} {'msgs/s':>9} {'MB/s':>7}")
        rates: dict[str, float] = {}
        for name, result in results.items():
            if isinstance(result, str):
                print(f"{name:<12} {result}")
                continue
            rates[name] = result["records"] / result["seconds"]
            print(f"{name:<12} {result['records']:>8.0f} {result['seconds']:>8.2f} {rates[name]:>9.0f} "
                  f"{result['bytes'] / result['seconds'] / 1e6:>7.2f}")
        print(f"processor / passthrough = {rates['processor'] / rates['passthrough']:.2f} (target >= 0.60)")
        print(f"processor / naive       = {rates['processor'] / rates['naive']:.1f}x (target >= 20x)")
        print(f"processor / python      = {rates['processor'] / rates['python']:.2f} (the native fast path's gain)")
        if "quix" in rates:
            print(f"processor / quix        = {rates['processor'] / rates['quix']:.2f}")

        profile = cProfile.Profile()
        timed_run(Processor, pipeline_for(raw, "_prof"), ring, bootstrap, args.records, args.batch_size, profile)
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(15)
        print("profile of the processor (main thread, sorted by own time):")
        print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:6000])

    finally:  # a long-lived local broker should not keep ~100 topics per script run
        prefix = raw["kafka"]["topic_prefix"]
        topics = [t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix)]
        for fut in admin.delete_topics(topics, operation_timeout=30).values():
            fut.result(60)
        print(f"deleted {len(topics)} topics {prefix}*")

if __name__ == "__main__":
    main()
