"""The generator's change mode on a thread of its own, so that MongoDB keeps changing while a test
kills, scales or restarts a part of the pipeline (Connect failover, processor rebalance, the
pipeline fault tests). The thread's error is raised on the test's thread by `finish`."""

from __future__ import annotations

import threading
import time
from typing import Any

from fresh.pipeline import PipelineConfig
from generator.changes import ChangeReport, ChangeRunner
from generator.domain import Domain, Plan


class ChangeStream:
    """`changes` changes of the generator (plan `seed`) at `rate` per second, on a daemon thread."""

    def __init__(self, db: Any, cfg: PipelineConfig, *, seed: int, changes: int, rate: float) -> None:
        self.changes = changes
        self.written = 0  # changes written so far
        self.ended: float | None = None  # time.monotonic() when the last change was written
        self._runner = ChangeRunner(db, cfg, Domain(Plan(seed=seed)))
        self._rate = rate
        self._report: ChangeReport | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> ChangeStream:
        self._thread.start()
        return self

    @property
    def failed(self) -> bool:
        return self._error is not None

    def _count(self, _kind: str) -> None:
        self.written += 1

    def _run(self) -> None:
        try:
            self._report = self._runner.run(self.changes, self._rate, progress=self._count)
            self.ended = time.monotonic()
        except BaseException as exc:  # raised on the test's thread by finish()
            self._error = exc

    def finish(self, timeout_s: float = 600) -> ChangeReport:
        """Wait for the last change; its report. The stream's own error, if any, is raised here."""
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), f"the change stream did not finish within {timeout_s:.0f} s"
        if self._error is not None:
            raise AssertionError(f"the change stream failed: {self._error!r}") from self._error
        assert self._report is not None
        assert sum(self._report.counts.values()) == self.changes, f"{self._report.counts} != {self.changes} changes"
        return self._report
