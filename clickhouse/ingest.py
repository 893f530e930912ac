"""Keep the embedded engine consuming: the ClickHouse ingest as a library call.

chdb's Kafka tables consume only while a process holds the engine's session; this holds it,
serves other processes' queries meanwhile (`clickhouse.endpoint`), and reports layer counts.
A ClickHouse server consumes on its own: there this only reports counts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from clickhouse.backend import Backend, ChdbBackend, Row, ServerBackend, trust_kafka_ca
from clickhouse.endpoint import QueryEndpoint, owner_file, read_owner
from clickhouse.errors import ClickHouseError
from clickhouse.quality import layer_counts
from fresh.pipeline import PipelineConfig
from fresh.settings import Settings

log = logging.getLogger(__name__)


def counts_line(counts: list[Row]) -> str:
    cells = " ".join(f"{r['entity']}={r['raw_rows']}/{r['mart_current']}" for r in counts)
    return f"{cells}  (raw rows / mart current)"


def run_ingest(
    settings: Settings,
    cfg: PipelineConfig,
    stop: threading.Event,
    *,
    seconds: float | None = None,
    every: float = 10.0,
    on_counts: Callable[[list[Row]], None] = lambda _rows: None,
    serve: bool = True,
) -> None:
    """Hold the engine until `stop` is set or `seconds` pass, calling `on_counts` every `every` s.

    On chdb, refuses when another live process owns the data folder (it consumes already) and,
    with `serve`, answers the other processes' queries while it runs.
    """
    backend: Backend
    endpoint: QueryEndpoint | None = None
    if settings.clickhouse_backend == "chdb":
        owner = read_owner(settings.chdb_path)
        if owner is not None:
            raise ClickHouseError(
                f"the embedded ClickHouse at {settings.chdb_path} is owned by pid {owner.pid} (see "
                f"{owner_file(settings.chdb_path)}), which consumes already; `freshctl status` shows it"
            )
        trust_kafka_ca(settings.kafka("clickhouse"))
        chdb = ChdbBackend(settings.chdb_path)
        backend = chdb
        if serve:
            endpoint = QueryEndpoint(chdb, settings.chdb_path)
            endpoint.start()
    else:
        backend = ServerBackend.connect(settings)
    deadline = None if seconds is None else time.monotonic() + seconds
    try:
        while True:
            left = every if deadline is None else min(every, deadline - time.monotonic())
            stopped = stop.wait(max(0.0, left))  # the consumers run in the engine meanwhile
            try:
                on_counts(layer_counts(backend, cfg))
            except ClickHouseError as exc:  # before `migrate` there are no tables to count yet
                log.info("counts unavailable: %s", str(exc).splitlines()[0][:200])
            if stopped or (deadline is not None and time.monotonic() >= deadline):
                return
    finally:
        t0 = time.monotonic()
        if endpoint is not None:
            endpoint.close()
        backend.close()  # the engine stops its Kafka consumers first: seconds, more under load
        log.info("ingest stopped: engine closed in %.1fs", time.monotonic() - t0)
