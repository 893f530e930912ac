"""Waits longer than a second show what is awaited, the time elapsed and the deadline, on a
terminal only; `-o json` and a pipe stay quiet. The terminal is a real pseudo-terminal."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
WAIT = ("import time\n"
        "from fresh import progress\n"
        "from fresh.wait import wait_until\n"
        "progress.set_quiet({quiet})\n"
        "t = time.monotonic()\n"
        "wait_until(lambda: time.monotonic() - t > 2.5, timeout_s=60, what='connector demo to be RUNNING')\n"
        "print('done')\n")


def _on_a_terminal(code: str) -> str:
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=follower, stdout=follower, stderr=follower,
                            cwd=REPO, env={**os.environ, "TERM": "xterm", "COLUMNS": "120"})
    os.close(follower)
    out = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=30)
    os.close(leader)
    return out.decode(errors="replace")


def test_a_long_wait_shows_what_elapsed_and_deadline_on_a_terminal() -> None:
    out = _on_a_terminal(WAIT.format(quiet=False))
    assert "waiting for connector demo to be RUNNING" in out and "of 60s deadline" in out
    assert "done" in out


def test_json_output_keeps_the_terminal_quiet() -> None:
    out = _on_a_terminal(WAIT.format(quiet=True))
    assert "waiting for" not in out and "done" in out


def test_a_pipe_gets_no_progress() -> None:
    result = subprocess.run([sys.executable, "-c", WAIT.format(quiet=False)], capture_output=True, text=True,
                            cwd=REPO, check=True)
    assert result.stderr == "" and result.stdout == "done\n"


def test_output_json_turns_progress_off() -> None:
    from click.testing import CliRunner

    from fresh import progress
    from freshctl.cli import freshctl

    try:
        CliRunner().invoke(freshctl, ["config", "topics", "-o", "json"])
        assert progress._quiet is True
    finally:
        progress.set_quiet(False)
