"""Supervised pipeline services of the local stack: the ClickHouse ingest, the PII processor and
the generator's change mode, each a Python worker (`stack.worker`) under a small supervisor.

The supervisor is what `<home>/run/<name>.pid` names; like the JVM services it carries the
stack's marker (`-Dprobablyfresh.stack=<home>#<name>` as an argument), runs in its own session
with its worker in the same process group, and writes both processes' output to
`<home>/logs/<name>.log`. So `freshctl down` stops it by PID like the others, and `stack logs`
reads it. It restarts a worker that dies, with exponential backoff (1 s doubling to 30 s); a
worker that dies `MAX_FAST_DEATHS` times in a row, each time within `STABLE_AFTER_S` of starting
(a crash on the same input at every start), is not restarted again: the supervisor records it as
failed with the last error line of the log and exits, and `freshctl status` reports it. A worker
that exits 0 (the change mode after N changes) is finished, not restarted.

State for `status` lives in `<home>/run/<name>.state.json`: state (running, backoff, failed,
finished, stopped), the worker's PID, when it started, restarts, and the last error.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fresh.settings import Settings

if TYPE_CHECKING:
    from stack.services import LocalStack, Service

MAX_FAST_DEATHS = 5
STABLE_AFTER_S = 60.0
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
# The worker's own error line, an uncaught exception's last line, or a JVM-style ERROR line.
_ERROR_LINE = re.compile(r"level=(ERROR|CRITICAL)|^Traceback|^[\w.]*(Error|Exception)\b|\bERROR\b|^error:")


def settings_env(settings: Settings) -> dict[str, str]:
    """`settings` as FRESH_* variables, so a worker loads exactly the settings of its starter."""
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value: Any = getattr(settings, name)
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        # None (an unset optional path) travels as an empty variable, which the settings read as unset
        env[f"FRESH_{name.upper()}"] = "" if value is None else str(value)
    return env


def state_file(stack: LocalStack, name: str) -> Path:
    return stack.run_dir / f"{name}.state.json"


def read_state(stack: LocalStack, name: str) -> dict[str, Any]:
    try:
        data = json.loads(state_file(stack, name).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_state(path: Path, **state: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state), encoding="utf-8")
    tmp.replace(path)


def last_error_line(log_path: Path, max_bytes: int = 64 * 1024) -> str:
    """The last line of the log that names an error (the worker's own one-line message)."""
    try:
        with log_path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            lines = f.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        if _ERROR_LINE.search(line) and not line.startswith("supervisor:"):
            return line.strip()[:300]
    return ""


def supervised_services(stack: LocalStack, args: dict[str, Sequence[str]] | None = None) -> dict[str, Service]:
    """The Service definitions `LocalStack` starts, stops and reports like its JVMs."""
    from stack.services import Service

    def command(name: str) -> list[str]:
        marker = stack.marker(name)
        worker = [sys.executable, "-m", "stack.worker", name, f"{marker}.worker", *(args or {}).get(name, ())]
        return [sys.executable, "-m", "stack.supervisor", marker, name, str(state_file(stack, name)),
                str(stack.log_file(name)), "--", *worker]

    def running(name: str) -> bool:
        state = read_state(stack, name)
        if state.get("state") == "failed":
            raise_failed(name, state)
        return state.get("state") in ("running", "finished")

    def ingest_ready() -> bool:
        if not running("ingest"):
            return False
        from clickhouse.endpoint import ChdbEndpointBackend, read_owner

        if stack.settings.clickhouse_backend != "chdb":
            return True
        owner = read_owner(stack.settings.chdb_path)
        if owner is None:
            return False
        backend = ChdbEndpointBackend(owner, timeout_s=5)
        try:
            return backend.query("SELECT 1 AS ok") == [{"ok": 1}]
        finally:
            backend.close()

    def define(name: str, address: str, ready: Any) -> Service:
        return Service(name=name, ports={}, address=address, command=lambda: command(name), ready=ready,
                       ready_timeout_s=90, env=lambda: {**os.environ, **settings_env(stack.settings)})

    processors = {name: define(name, "CDC topics -> *_secure", lambda name=name: running(name))
                  for name in _processor_names(stack, [n for n in args or {} if n.startswith("processor-")])}
    return {
        "ingest": define("ingest", f"chdb at {stack.settings.chdb_path}", ingest_ready),
        **processors,
        "changes": define("changes", "generator change mode -> MongoDB", lambda: running("changes")),
    }


def _processor_names(stack: LocalStack, extra: list[str]) -> list[str]:
    """The configured processor instances, plus `extra` ones (`start_supervised("processor-2", [])`
    scales out by one) and any still recorded from a run with more (so `down` and `status` see
    every one)."""
    from fresh.errors import ConfigError
    from fresh.pipeline import load_pipeline_config
    from stack import processor_services

    try:
        instances = load_pipeline_config(stack.settings.pipeline_config).scale.processor_instances
    except ConfigError:  # `down` and `status` still work with a broken config
        instances = 1
    names = processor_services(instances)
    recorded = sorted(p.name.removesuffix(".pid") for p in stack.run_dir.glob("processor-*.pid"))
    return names + [n for n in sorted({*recorded, *extra}) if n not in names]


def raise_failed(name: str, state: dict[str, Any]) -> None:
    from stack.services import ServiceDied

    raise ServiceDied(f"{name} died {state.get('restarts', 0) + 1} times and is not restarted: "
                      f"{state.get('last_error') or 'no error line in its log'}; see `freshctl stack logs {name}`")


# ---- the supervisor process ------------------------------------------------------------------


@dataclass(frozen=True)
class RestartPolicy:
    max_fast_deaths: int = MAX_FAST_DEATHS
    stable_after_s: float = STABLE_AFTER_S
    first_backoff_s: float = FIRST_BACKOFF_S
    max_backoff_s: float = MAX_BACKOFF_S


def supervise(name: str, cmd: list[str], state_path: Path, log_path: Path,
              policy: RestartPolicy = RestartPolicy()) -> int:
    """Run `cmd` until SIGTERM/SIGINT, restarting it as `policy` says; the exit code is 1 when it gave up."""
    stopping = threading.Event()
    current: list[subprocess.Popen[bytes]] = []

    def on_signal(_signum: int, _frame: object) -> None:
        stopping.set()
        for child in current:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _supervise(name, cmd, state_path, log_path, policy, stopping, current)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _supervise(name: str, cmd: list[str], state_path: Path, log_path: Path, policy: RestartPolicy,
               stopping: threading.Event, current: list[subprocess.Popen[bytes]]) -> int:
    restarts = fast_deaths = 0
    backoff = policy.first_backoff_s
    last_error = ""

    def state(kind: str, pid: int | None = None, started_at: float | None = None) -> None:
        _write_state(state_path, state=kind, pid=pid, supervisor_pid=os.getpid(), started_at=started_at,
                     restarts=restarts, last_error=last_error)

    while not stopping.is_set():
        started = time.time()
        child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)  # stdout/stderr: the log file, inherited
        current[:] = [child]
        state("running", child.pid, started)
        rc = child.wait()
        if stopping.is_set():
            break
        if rc == 0:
            state("finished")
            return 0
        ran = time.time() - started
        when = time.strftime("%H:%M:%S")
        if rc < 0:
            last_error = f"{when} killed by {signal.Signals(-rc).name}"
        else:
            last_error = f"{when} exited with code {rc}: {last_error_line(log_path) or 'no error line in its log'}"
        if ran >= policy.stable_after_s:
            fast_deaths, backoff = 0, policy.first_backoff_s
        fast_deaths += 1
        if fast_deaths >= policy.max_fast_deaths:
            last_error = (f"{last_error} (died {fast_deaths} times in a row, each within {policy.stable_after_s:.0f}s "
                          "of starting; not restarted: fix the cause, then run `freshctl up`)")
            print(f"supervisor: {name} gave up: {last_error}", flush=True)
            state("failed")
            return 1
        print(f"supervisor: {name} exited with code {rc} after {ran:.1f}s; restart {restarts + 1} "
              f"in {backoff:.0f}s", flush=True)
        state("backoff")
        stopping.wait(backoff)  # backoff pacing between restarts, not a wait for a condition
        backoff = min(backoff * 2, policy.max_backoff_s)
        restarts += 1
    for child in current:
        try:
            child.wait(timeout=80)  # below `down`'s 90 s: the worker closes first, then the supervisor
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    state("stopped")
    return 0


def main(argv: list[str]) -> int:
    # argv: <marker> <name> <state file> <log file> -- <worker command...>
    if len(argv) < 6 or argv[4] != "--":
        print("usage: python -m stack.supervisor MARKER NAME STATE_FILE LOG_FILE -- COMMAND...", file=sys.stderr)
        return 2
    _marker, name, state_path, log_path = argv[:4]
    return supervise(name, argv[5:], Path(state_path), Path(log_path))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
