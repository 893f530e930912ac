"""Poll a condition until a deadline. The one wait loop of the project: never sleep blindly."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from fresh.errors import WaitTimeoutError
from fresh.progress import waiting

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T | None],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = 0.2,
    max_interval_s: float = 2.0,
    fatal: tuple[type[BaseException], ...] = (),
) -> T:
    """Call `condition` until it returns a truthy value and return that value.

    Exceptions raised by `condition` count as "not yet" (except those in `fatal`, which
    propagate at once); the last one is named in the timeout message, which also says what
    was awaited and for how long. On a terminal, a wait past one second shows a progress line.
    """
    with waiting(what, timeout_s) as progress:
        return _poll(condition, progress.tick, timeout_s=timeout_s, what=what, interval_s=interval_s,
                     max_interval_s=max_interval_s, fatal=fatal)


def _poll(
    condition: Callable[[], T | None],
    tick: Callable[[], None],
    *,
    timeout_s: float,
    what: str,
    interval_s: float,
    max_interval_s: float,
    fatal: tuple[type[BaseException], ...],
) -> T:
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while True:
        tick()
        try:
            result = condition()
            if result:
                return result
        except fatal:
            raise
        except Exception as exc:  # the condition is allowed to fail while the thing starts
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise WaitTimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}{detail}")
        time.sleep(min(interval_s, max(0.0, deadline - time.monotonic())))  # poll interval
        interval_s = min(interval_s * 1.5, max_interval_s)
