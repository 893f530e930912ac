"""Pre-flight errors of the stack, without starting anything: each is one line with the fix."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from fresh.errors import DownloadError, ToolMissingError
from stack import jars
from stack.services import _port_free, check_java
from stack.versions import load_versions


def test_missing_java_names_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissingError, match=r"java not found on PATH: install a Java 17\+ runtime"):
        check_java()


def test_missing_maven_names_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    java = Path(os.environ.get("JAVA_HOME", "/usr")) / "bin" / "java"
    (tmp_path / "java").symlink_to(java if java.exists() else "/usr/bin/java")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissingError, match=r"mvn not found on PATH: install Maven"):
        check_java()


def test_failing_maven_leaves_no_partial_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A Maven that fails the way an unreachable repository does: exit 1 after some output.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "mvn"
    fake.write_text("#!/bin/sh\necho '[ERROR] Could not transfer artifact'\nexit 1\n", encoding="utf-8")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    with pytest.raises(DownloadError, match=r"Maven could not fetch the kafka jars \(exit 1\); see .*maven-kafka.log"):
        jars.fetch_bundle(tmp_path / "jars", jars.BUNDLES[0], load_versions(), tmp_path / "logs")
    assert not (tmp_path / "jars" / "kafka").exists()
    assert not (tmp_path / "jars" / ".kafka.partial").exists()
    assert "Could not transfer" in (tmp_path / "logs" / "maven-kafka.log").read_text(encoding="utf-8")


def test_port_free_sees_a_listener() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.listen()
        assert not _port_free(port)
    assert _port_free(port)


def test_a_pid_file_pointing_at_another_process_is_stale(tmp_path: Path) -> None:
    from fresh.settings import load_settings
    from stack.services import LocalStack

    stack = LocalStack(load_settings(stack_home=tmp_path))
    stack.run_dir.mkdir(parents=True)
    pid_file = stack.run_dir / "kafka.pid"
    pid_file.write_text(str(os.getpid()), encoding="utf-8")  # alive, but without kafka's marker
    assert stack.pid_of("kafka") is None
    assert not pid_file.exists()
    pid_file.write_text("999999999", encoding="utf-8")  # no such process
    assert stack.pid_of("kafka") is None
