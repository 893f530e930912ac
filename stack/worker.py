"""The worker of a supervised service (`stack.supervisor`): one pipeline stage, called as a library
function, in its own process. Settings come from the FRESH_* environment the supervisor passes on.

    python -m stack.worker ingest MARKER
    python -m stack.worker processor MARKER      (processor-2, processor-3...: more instances, one group)
    python -m stack.worker changes MARKER N RATE SEED
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

from fresh.errors import FreshError
from fresh.logs import configure_logging
from fresh.pipeline import load_pipeline_config
from fresh.settings import load_settings

log = logging.getLogger("stack.worker")
PROCESSOR_INSTANCE_ID = "local-pii-0"  # fixed: a restarted processor fences its former self at once


def processor_instance_id(name: str) -> str:
    """`processor` -> local-pii-0, `processor-2` -> local-pii-2: fixed per instance, like the first."""
    return PROCESSOR_INSTANCE_ID if name == "processor" else f"local-pii-{name.removeprefix('processor-')}"


def run(name: str, args: list[str]) -> None:
    settings = load_settings()
    cfg = load_pipeline_config(settings.pipeline_config)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _signum, _frame: stop.set())
    if name == "ingest":
        from clickhouse.ingest import counts_line, run_ingest

        run_ingest(settings, cfg, stop, every=10.0, on_counts=lambda rows: log.info("counts %s", counts_line(rows)))
    elif name == "processor" or name.startswith("processor-"):
        from smt.processor import ProcessorStuckError
        from smt.service import build_processor, run_processor

        processor = build_processor(settings, cfg, instance_id=processor_instance_id(name), counters_interval_s=5.0)
        try:
            counters = run_processor(settings, cfg, processor, stop)
        except ProcessorStuckError as exc:
            # its thread is blocked inside librdkafka: leave without it; the supervisor restarts us
            log.error("error: %s", exc)
            logging.shutdown()
            os._exit(1)
        log.info("processor stopped %s", counters.line())
    elif name == "changes":
        from generator.changes import run_changes
        from generator.domain import Plan

        n, rate, seed = int(args[0]), float(args[1]), int(args[2])
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # nothing to finish between two changes
        report = run_changes(settings, cfg, Plan(seed=seed), n, rate)
        log.info("changes done %s in %.1fs", sum(report.counts.values()), report.seconds)
    else:
        raise SystemExit(f"unknown worker {name!r}")


def main(argv: list[str]) -> int:
    configure_logging("INFO")
    name, args = argv[0], argv[2:]  # argv[1] is the stack's marker, for `ps` and `down`
    try:
        run(name, args)
    except FreshError as exc:
        log.error("error: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
