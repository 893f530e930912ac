"""Running the PII processor as a library call: what `freshctl secure run` and the supervised
processor of `freshctl up` both call. It uses the processor's public API only."""

from __future__ import annotations

import logging
import threading

from fresh.pipeline import PipelineConfig
from fresh.settings import Settings
from smt.keyring import KeyringSource
from smt.processor import (
    Counters,
    KafkaUnreachableError,
    Processor,
    ProcessorOptions,
    ensure_topics,
    preflight,
    serve,
)

log = logging.getLogger(__name__)


def build_processor(
    settings: Settings,
    cfg: PipelineConfig,
    *,
    instance_id: str | None = None,
    batch_size: int | None = None,
    counters_interval_s: float = 10.0,
    transform_threads: int | None = None,
    max_starts: int | None = None,
) -> Processor:
    """A processor for these settings. Refuses an entity without policy and a missing keyring.
    Batch size and poll timeout (its latency floor) come from `pii_processor` of the pipeline config
    unless `batch_size` is given."""
    opts = ProcessorOptions(kafka=settings.kafka("processor"),
                            batch_size=batch_size or cfg.pii_processor.batch_size,
                            poll_timeout_s=cfg.pii_processor.poll_timeout_ms / 1000,
                            counters_interval_s=counters_interval_s)
    if instance_id:
        opts.instance_id = instance_id
    if transform_threads:
        opts.transform_threads = transform_threads
    if max_starts is not None:
        opts.max_starts = max_starts
    return Processor(cfg, KeyringSource.from_settings(settings), opts)


def run_processor(
    settings: Settings, cfg: PipelineConfig, processor: Processor, stop: threading.Event,
    *, idle_exit_s: float | None = None,
) -> Counters:
    """Check the broker, create the `_secure` and DLQ topics if missing, then process until `stop`
    (or idle) under the watchdog of `smt.processor.serve`. Raises `ProcessorStuckError` when the
    processor thread is blocked inside librdkafka: the caller must then exit the process."""
    check = preflight(cfg, settings.kafka("processor"), timeout_s=5.0)
    if check.broker:
        raise KafkaUnreachableError(check.broker)
    for problem in check.topics:
        log.warning("%s", problem)  # a CDC topic appears when its connector starts; the subscription waits
    created = ensure_topics(cfg, settings.kafka("processor"))
    if created:
        log.info("created topics %s", ",".join(created))
    return serve(processor, stop, idle_exit_s=idle_exit_s)
