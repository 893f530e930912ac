"""`freshctl grafana snapshot` as a user runs it: its own process, the committed dashboards, a chdb
folder of its own (migrated by `freshctl clickhouse migrate`; chdb allows one process per folder,
and this test process holds another)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fresh.settings import REPO_ROOT, Settings

FRESHCTL = str(Path(sys.executable).with_name("freshctl"))


def test_snapshot_command_draws_every_committed_dashboard(settings: Settings, tmp_path: Path) -> None:
    env = {**os.environ, "FRESH_CHDB_PATH": str(tmp_path / "chdb"), "FRESH_CLICKHOUSE_BACKEND": "chdb",
           "FRESH_KAFKA_BOOTSTRAP": settings.kafka_bootstrap}
    migrate = subprocess.run([FRESHCTL, "clickhouse", "migrate"], env=env, capture_output=True, text=True,
                             timeout=300, cwd=REPO_ROOT, check=False)
    assert migrate.returncode == 0, migrate.stderr
    out = tmp_path / "pics"
    snap = subprocess.run([FRESHCTL, "grafana", "snapshot", "--out", str(out), "--from", "now-1h"], env=env,
                          capture_output=True, text=True, timeout=300, cwd=REPO_ROOT, check=False)
    assert snap.returncode == 0, snap.stderr
    for name in ("raw-overview", "sales", "pipeline-health"):
        assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert "<svg" in (out / f"{name}.html").read_text(encoding="utf-8")
    bad = subprocess.run([FRESHCTL, "grafana", "snapshot", "--dashboard", "nope"], env=env, capture_output=True,
                         text=True, timeout=120, cwd=REPO_ROOT, check=False)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "no dashboard nope" in bad.stderr
