"""The processor's `lag=` counter is the number `freshctl status` and `secure health` show: the
group's committed offsets against the high watermarks (fresh.clients.group_lag). It used to be
librdkafka's consumer_lag, which read lag=451 for minutes after a restart at a committed lag of 0."""

from __future__ import annotations

from typing import Any

from smt_kafka_io import Kafka

from fresh.clients import group_lag
from fresh.kafka_connection import KafkaConnection
from fresh.pipeline import PipelineConfig
from fresh.wait import wait_until
from smt.keyring import KeyringSource
from smt.processor import Processor, ProcessorOptions
from tests.cdc_records import mixed_records


def _status_lag(bootstrap: KafkaConnection, cfg: PipelineConfig) -> int:
    return sum(lag or 0 for lag in group_lag(bootstrap, cfg.pii_processor.consumer_group, cfg.cdc_topics).values())


def test_lag_counter_agrees_with_status_before_during_and_after_a_restart(
    kafka: Kafka, secure_pipeline: PipelineConfig, keyring_source: KeyringSource, start_processor: Any,
    bootstrap: KafkaConnection, unique: str,
) -> None:
    cfg = secure_pipeline
    records = list(mixed_records(cfg, 900, seed=3))
    kafka.produce(records[:600])
    idle = Processor(cfg, keyring_source, ProcessorOptions(kafka=bootstrap, instance_id=f"{unique}-idle"))
    assert idle.counters.lag == -1  # not measured yet
    assert idle.probe_lag() == _status_lag(bootstrap, cfg) == 600  # nothing committed: every record

    first = start_processor(cfg, keyring_source)  # counters every 2 s
    wait_until(lambda: first.processor.counters.consumed >= 600 and _status_lag(bootstrap, cfg) == 0,
               timeout_s=180, what="the processor to commit 600 records")
    wait_until(lambda: first.processor.counters.lag == 0, timeout_s=60, what="the lag counter to read 0")
    first.stop_and_join()

    kafka.produce(records[600:])
    assert idle.probe_lag() == _status_lag(bootstrap, cfg) == 300  # committed 600 of 900
    restarted = start_processor(cfg, keyring_source)  # counters every 2 s
    wait_until(lambda: restarted.processor.counters.consumed >= 300 and _status_lag(bootstrap, cfg) == 0,
               timeout_s=180, what="the restarted processor to commit the other 300 records")
    # After the restart the counter follows the committed offsets down to 0, as status does.
    wait_until(lambda: restarted.processor.counters.lag == 0, timeout_s=60, what="the lag counter to read 0")
    assert restarted.processor.probe_lag() == _status_lag(bootstrap, cfg) == 0
    restarted.stop_and_join()
