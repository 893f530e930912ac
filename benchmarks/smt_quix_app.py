"""The same transform (smt.transform.Transformer) as a quix-streams app with exactly-once on,
for benchmarks/smt_throughput.py. Runs in a separate venv (quixstreams pins an older
confluent-kafka than this project), so it is not a project dependency:

    python3 -m venv /tmp/quixvenv
    /tmp/quixvenv/bin/pip install quixstreams cryptography phonenumbers==9.0.42 orjson pydantic pydantic-settings \
        pyyaml click ./smt/native        # the native fast path too, as the processor has it
    /tmp/quixvenv/bin/python benchmarks/smt_quix_app.py --pipeline P --keyring K --bootstrap B --records N

Prints one JSON line: {"records", "seconds", "bytes", "dlq"}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quixstreams import Application

from fresh.pipeline import load_pipeline_config
from smt.keyring import KeyringSource
from smt.transform import Transformer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pipeline", type=Path, required=True)
    ap.add_argument("--keyring", type=Path, required=True)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--records", type=int, required=True)
    args = ap.parse_args()
    cfg = load_pipeline_config(args.pipeline)
    ring = KeyringSource(args.keyring).current()
    app = Application(broker_address=args.bootstrap, consumer_group=f"quix-{uuid.uuid4().hex[:6]}",
                      auto_offset_reset="earliest", processing_guarantee="exactly-once", loglevel="WARNING",
                      use_changelog_topics=False, commit_interval=1.0)
    state = {"n": 0, "bytes": 0, "start": 0.0}

    def make(t: Transformer):  # type: ignore[no-untyped-def]
        def apply(value: bytes | None) -> bytes | None:
            if not state["start"]:
                state["start"] = time.monotonic()
            state["n"] += 1
            state["bytes"] += len(value) if value else 0
            if state["n"] >= args.records:
                app.stop()
            return t(value, ring)
        return apply

    for e in cfg.entities.values():
        src = app.topic(e.cdc_topic, value_deserializer="bytes", key_deserializer="bytes")
        dst = app.topic(e.cdc_topic + "_quix", value_serializer="bytes", key_serializer="bytes")
        app.dataframe(src).apply(make(Transformer(e, cfg.pii_processor.default_region,
                                                  cfg.pii_processor.max_record_bytes))).to_topic(dst)
    app.run()
    seconds = time.monotonic() - state["start"]
    print(json.dumps({"records": state["n"], "seconds": seconds, "bytes": state["bytes"], "dlq": 0}))


if __name__ == "__main__":
    main()
