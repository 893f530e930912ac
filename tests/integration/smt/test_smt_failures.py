"""Crash, rotation, bad input and scale-out, on the real broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections import Counter
from pathlib import Path

from smt_kafka_io import (
    FRESHCTL,
    Feeder,
    Kafka,
    identities_in,
    identities_out,
    kill_with_open_transaction,
    write_pipeline,
)

from fresh.cdc_record import key as cdc_key
from fresh.cdc_record import value as cdc_value
from fresh.pipeline import PipelineConfig
from fresh.wait import wait_until
from smt.envelope import decrypt, parse
from smt.keyring import KeyringSource
from smt.normalize import normalize_email
from smt.processor import DLQ_COLLECTION
from tests.cdc_records import CdcRecord, Documents, mixed_records


def committed(kafka: Kafka, cfg: PipelineConfig) -> int:
    return kafka.committed(cfg.pii_processor.consumer_group)


def test_sigkill_mid_stream_then_restart_loses_and_duplicates_nothing(
    kafka: Kafka, secure_pipeline: PipelineConfig, keyring_source: KeyringSource, tmp_path: Path, unique: str
) -> None:
    """SIGKILL of `freshctl secure run` while a transaction is open (proved: frozen first, then
    `_secure` partitions with records of an undecided transaction seen before and after the kill)
    and while the stream flows (the feeder's errors fail the test); the restarted instance fences
    the dead one, and `_secure` read_committed holds every CDC record exactly once."""
    cfg = secure_pipeline
    records = list(mixed_records(cfg, 20_000, seed=11))
    first, rest = records[:4000], records[4000:]
    kafka.produce(first)
    env = {**os.environ, "FRESH_PIPELINE_CONFIG": str(write_pipeline(cfg, tmp_path / "pipeline.yaml")),
           "FRESH_KEYRING_PATH": str(keyring_source.path), "FRESH_KAFKA_BOOTSTRAP": kafka.bootstrap.bootstrap_servers}
    env.pop("FRESH_KEYRING_JSON", None)
    cmd = [FRESHCTL, "--log-level", "INFO", "secure", "run", "--instance-id", f"{unique}-x", "--batch-size", "300",
           "--counters-interval", "1"]
    log1 = (tmp_path / "run1.log").open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=log1, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: committed(kafka, cfg) >= 1000, timeout_s=60, what="the first committed transactions")
        feeder = Feeder(kafka.bootstrap, rest, chunk=500)  # keeps the stream flowing while the processor dies
        wait_until(lambda: committed(kafka, cfg) >= 6000, timeout_s=60, what="processing of the live stream")
        open_at_kill = kill_with_open_transaction(proc, kafka, cfg)
        at_kill = committed(kafka, cfg)
        feeder.join()  # re-raises the feeder's error, if any
        assert at_kill < len(records), "the kill came after the stream ended; it proves nothing"
        assert open_at_kill > 0
    finally:
        if proc.poll() is None:
            proc.kill()
    log2 = (tmp_path / "run2.log").open("w")
    proc2 = subprocess.Popen(cmd, env=env, stdout=log2, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: committed(kafka, cfg) >= len(records), timeout_s=120,
                   what=f"the restarted processor to commit all {len(records)} offsets")
        proc2.send_signal(signal.SIGTERM)
        assert proc2.wait(60) == 0, (tmp_path / "run2.log").read_text()[-2000:]
    finally:
        if proc2.poll() is None:
            proc2.kill()
    assert "in=" in (tmp_path / "run2.log").read_text()
    outs = kafka.read_to_end(cfg.secure_topics)
    assert kafka.count([cfg.kafka.dlq_topic]) == 0
    assert identities_out(outs) == identities_in(records, cfg)  # nothing lost, nothing twice
    aborted = len(kafka.read_to_end(cfg.secure_topics, committed=False)) - len(outs)
    assert aborted > 0  # the open transaction's records are in the log, aborted, and hidden by read_committed
    print(f"partitions with an open transaction at the kill: {open_at_kill}; records of aborted transactions "
          f"left in the log: {aborted}")


def test_key_rotation_mid_stream_old_and_new_ciphertexts_decrypt(
    kafka: Kafka, secure_pipeline: PipelineConfig, keyring_source: KeyringSource, start_processor
) -> None:
    cfg = secure_pipeline
    docs = Documents(seed=5)
    topic = cfg.entity("customers").cdc_topic
    before = [CdcRecord(topic, cdc_key(f"C{i:06d}"), cdc_value(docs.customer(i), "c", i)) for i in range(1, 501)]
    after = [CdcRecord(topic, cdc_key(f"C{i:06d}"), cdc_value(docs.customer(i), "u", i)) for i in range(501, 1001)]
    old_key = keyring_source.current().active.id
    proc = start_processor(cfg, keyring_source, keyring_check_s=0.0)
    kafka.produce(before)
    wait_until(lambda: proc.processor.counters.consumed >= 500, timeout_s=60, what="500 records before rotation")
    keyring_source.rotate()  # the running processor is not restarted
    new_key = KeyringSource(keyring_source.path).current().active.id
    assert new_key != old_key
    kafka.produce(after)
    wait_until(lambda: proc.processor.counters.consumed >= 1000, timeout_s=60, what="500 records after rotation")
    proc.stop_and_join()
    ring = KeyringSource(keyring_source.path).current()
    seen = Counter()
    for o in kafka.read_to_end([cfg.entity("customers").secure_topic]):
        out = json.loads(o.value)
        kid = parse(out["email"])[1]  # (version, key id, alg, payload)
        seen[kid] += 1
        assert kid == (old_key if out["__op"] == "c" else new_key)
        src = normalize_email(docs.customer(out["__source_ts_ms"])["email"])
        assert decrypt(ring.keys, out["email"], "customers", "email", out["customer_id"]).decode() == src
    assert seen == {old_key: 500, new_key: 500}


def test_bad_records_all_reach_the_dlq_with_reasons_and_the_stream_goes_on(
    kafka: Kafka, settings, unique: str, keyring_source: KeyringSource, start_processor
) -> None:
    from smt_kafka_io import make_pipeline

    from smt.processor import ensure_topics

    cfg = make_pipeline(settings, unique, {"purchases": {"items[].gift_email": {"action": "encrypt",
                                                                                 "normalize": "email"}}})
    kafka.create(cfg.cdc_topics)
    ensure_topics(cfg, kafka.bootstrap)
    docs = Documents(seed=9)
    ct, pt, st = (cfg.entity(n).cdc_topic for n in ("customers", "purchases", "stores"))
    cust, purch = docs.customer(1), docs.purchase(1)
    bad = {
        b"malformed": (ct, b'{"_id": "C1", "email": '),
        b"binary": (ct, bytes(range(256))),
        b"empty": (ct, b""),
        b"not_object": (ct, b"[1, 2, 3]"),
        b"huge": (ct, cdc_value({**cust, "first_name": "A" * 600_000}, "c", 1)),
        b"null_email": (ct, cdc_value({**cust, "email": None}, "c", 1)),
        b"email_number": (ct, cdc_value({**cust, "email": 42}, "c", 1)),
        b"phone_object": (ct, cdc_value({**cust, "phone": {"n": "555"}}, "c", 1)),
        b"phone_text": (ct, cdc_value({**cust, "phone": "call me maybe"}, "c", 1)),
        b"customer_string": (pt, cdc_value({**purch, "customer": "anna@example.com"}, "c", 1)),
        b"nested_arrays": (pt, cdc_value({**purch, "items": [[{"gift_email": "a@b.co"}]]}, "c", 1)),
        b"email_outside_policy": (st, cdc_value({**docs.store(1), "contact": "Boss@Example.com"}, "c", 1)),
    }
    expected = {
        b"malformed": b"not_json", b"binary": b"not_json", b"empty": b"not_json", b"not_object": b"not_object",
        b"huge": b"oversize", b"null_email": b"null_pii", b"email_number": b"wrong_type",
        b"phone_object": b"wrong_type", b"phone_text": b"not_normalizable", b"customer_string": b"wrong_type",
        b"nested_arrays": b"wrong_type", b"email_outside_policy": b"plaintext_pii",
    }
    good_before = list(mixed_records(cfg, 300, seed=1))
    gift = {**purch, "_id": "T99", "purchase_id": "T99", "items": [{**purch["items"][0], "gift_email": " G@X.io "}]}
    good_after = [*mixed_records(cfg, 300, seed=2), CdcRecord(pt, cdc_key("T99"), cdc_value(gift, "c", 7))]
    proc = start_processor(cfg, keyring_source)
    kafka.produce(good_before)
    kafka.produce([], extra=[(topic, key, value) for key, (topic, value) in bad.items()])
    kafka.produce(good_after)
    total = len(good_before) + len(bad) + len(good_after)
    wait_until(lambda: proc.processor.counters.consumed >= total, timeout_s=60, what=f"{total} records consumed")
    proc.stop_and_join()

    dlq = kafka.read_to_end([cfg.kafka.dlq_topic])
    # A list, not a dict: a record sent to the DLQ twice would show as a second entry.
    assert sorted((o.key, o.headers["dlq.reason"]) for o in dlq) == sorted(expected.items())
    ring = keyring_source.current()
    for o in dlq:
        topic, value = bad[o.key]
        assert o.headers["dlq.source.topic"] == topic.encode() and int(o.headers["dlq.source.offset"]) >= 0
        assert o.headers["dlq.detail"] and b"@" not in o.headers["dlq.detail"]
        assert o.value is not None and b"@" not in o.value
        assert decrypt(ring.keys, o.value.decode(), DLQ_COLLECTION, topic) == value  # encrypted whole
    secure = kafka.read_to_end(cfg.secure_topics)
    assert len(secure) == len(good_before) + len(good_after)
    t99 = next(json.loads(o.value) for o in secure if o.key == cdc_key("T99"))
    gift = decrypt(ring.keys, t99["items"][0]["gift_email"], "purchases", "items[].gift_email", t99["purchase_id"])
    assert gift == b"g@x.io"


def test_two_instances_share_partitions_exactly_once(
    kafka: Kafka, secure_pipeline: PipelineConfig, keyring_source: KeyringSource, start_processor
) -> None:
    cfg = secure_pipeline
    a = start_processor(cfg, keyring_source, instance="a")
    b = start_processor(cfg, keyring_source, instance="b")
    partitions = len(cfg.cdc_topics) * 3

    def shared() -> bool:
        pa, pb = a.processor.assignment, b.processor.assignment
        return bool(pa) and bool(pb) and not (pa & pb) and len(pa | pb) == partitions
    wait_until(shared, timeout_s=60, what="both instances to own a share of the partitions")
    records = list(mixed_records(cfg, 10_000, seed=13))
    kafka.produce(records)
    wait_until(lambda: a.processor.counters.consumed + b.processor.counters.consumed >= len(records),
               timeout_s=120, what="both instances to consume everything")
    ca, cb = a.stop_and_join(), b.stop_and_join()
    assert ca.consumed > 0 and cb.consumed > 0
    assert identities_out(kafka.read_to_end(cfg.secure_topics)) == identities_in(records, cfg)
