"""PII processor throughput over SASL_SSL (TLS + SCRAM-SHA-512, as pf-processor) against PLAINTEXT,
in one run, on one broker and the same input.

Starts a temporary broker of its own (its own stack home in a temp folder, the shared jar cache,
ports from --port: SASL_SSL, controller, and a benchmark-only PLAINTEXT listener at port+2), feeds
the CDC topics once, then runs the processor over each listener in turn, alternated `--repeat`
times, each run into its own `_secure` topics and group; prints msgs/s per run and the median
ratio SASL_SSL / PLAINTEXT. The broker is stopped and its folder deleted at the end.

    .venv/bin/python benchmarks/kafka_tls_throughput.py                 # 50k records, 3 rounds
    .venv/bin/python benchmarks/kafka_tls_throughput.py --records 20000 --repeat 2 --port 19494
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import uuid
from pathlib import Path

import yaml
from confluent_kafka import Producer
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)
from smt_throughput import pipeline_for, timed_run

from fresh.kafka_connection import KafkaConnection
from fresh.pipeline import PipelineConfig
from fresh.settings import load_settings
from smt.keyring import KeyringSource
from smt.processor import Processor
from stack.kafka_security import grant_pipeline_acls
from stack.services import LocalStack
from tests.cdc_records import mixed_records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--batch-size", type=int, default=5_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--port", type=int, default=19494, help="SASL_SSL port; controller +1, PLAINTEXT +2")
    args = ap.parse_args()

    shared = load_settings()
    home = Path(tempfile.mkdtemp(prefix="pf-tls-bench-"))
    settings = load_settings(stack_home=home, kafka_port=args.port, kafka_controller_port=args.port + 1,
                             kafka_plaintext_port=args.port + 2, kafka_bootstrap=f"127.0.0.1:{args.port}")
    stack = LocalStack(settings, jars_root=Path(shared.stack_home) / "jars")
    try:
        report = stack.up(["kafka"])
        print(f"temporary broker up in {report.seconds:.1f}s (home {home})")
        admin = settings.kafka("admin")
        raw = yaml.safe_load(settings.pipeline_config.read_text(encoding="utf-8"))
        raw["kafka"]["topic_prefix"] = f"tlsbench{uuid.uuid4().hex[:6]}"
        base = PipelineConfig.model_validate(raw)
        client = AdminClient(admin.config())
        for fut in client.create_topics([NewTopic(t, num_partitions=3, replication_factor=1)
                                         for t in base.cdc_topics]).values():
            fut.result(30)
        producer = Producer(admin.config({"partitioner": "murmur2_random", "linger.ms": 20}))
        size = 0
        for i, r in enumerate(mixed_records(base, args.records, seed=42)):
            producer.produce(r.topic, r.value, r.key)
            size += len(r.value or b"")
            if i % 50_000 == 0:
                producer.flush()
        producer.flush()
        print(f"input: {args.records} records, {size / 1e6:.1f} MB")

        # timed_run names its groups bench-<tag> (transactional ids pii-bench-<tag>-...): allow them to pf-processor.
        user = f"User:{settings.kafka_processor_user}"
        acls = [AclBinding(rtype, name, ResourcePatternType.PREFIXED, user, "*", op, AclPermissionType.ALLOW)
                for rtype, name in ((ResourceType.GROUP, "bench-"), (ResourceType.TRANSACTIONAL_ID, "pii-bench-"))
                for op in (AclOperation.READ if rtype == ResourceType.GROUP else AclOperation.WRITE,
                           AclOperation.DESCRIBE)]
        for fut in client.create_acls(acls).values():
            fut.result(30)
        ring = KeyringSource(home / "keyring.json", allow_unwrapped=True)  # throwaway keys of a benchmark
        ring.generate()
        plaintext = KafkaConnection(bootstrap_servers=f"127.0.0.1:{args.port + 2}", security_protocol="PLAINTEXT")
        secure = settings.kafka("processor")
        rates: dict[str, list[float]] = {"SASL_SSL": [], "PLAINTEXT": []}
        for i in range(args.repeat):  # alternated, so load from other tenants hits both alike
            for name, conn in (("SASL_SSL", secure), ("PLAINTEXT", plaintext)):
                cfg = pipeline_for(raw, f"_{name.lower()}{i}")
                grant_pipeline_acls(settings, cfg)
                r = timed_run(Processor, cfg, ring, conn, args.records, args.batch_size)
                rates[name].append(r["records"] / r["seconds"])
        for name, rs in rates.items():
            print(f"{name:<10} msgs/s per run: " + ", ".join(f"{x:.0f}" for x in rs)
                  + f"  (median {sorted(rs)[len(rs) // 2]:.0f})")
        ratios = sorted(s / p for s, p in zip(rates["SASL_SSL"], rates["PLAINTEXT"], strict=True))
        print("SASL_SSL / PLAINTEXT per round: " + ", ".join(f"{x:.2f}" for x in ratios)
              + f" (median {ratios[len(ratios) // 2]:.2f})")
    finally:
        stack.down()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
