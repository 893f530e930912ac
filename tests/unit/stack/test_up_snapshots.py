"""`freshctl up`'s summary names the dashboard snapshots that `freshctl grafana snapshot` wrote
(into the stack home's snapshots folder, the one both commands take from grafana.snapshot_files),
or says how to draw them when there are none."""

from __future__ import annotations

import os
from pathlib import Path

from fresh.settings import load_settings
from grafana.snapshot_files import existing_snapshots, snapshot_dir
from stack.pipeline import Summary


def test_summary_names_existing_snapshots_and_their_age(tmp_path: Path) -> None:
    folder = snapshot_dir(load_settings(stack_home=tmp_path))
    assert folder == tmp_path / "snapshots"
    none = Summary([], 0, [], existing_snapshots(folder), folder)
    assert none.snapshot_note(0.0) == (f"snapshots: none in {folder}; draw the dashboards with "
                                       "`freshctl grafana snapshot`")

    folder.mkdir()
    for name in ("sales", "raw-overview"):
        (folder / f"{name}.html").write_text("<html></html>", encoding="utf-8")
    (folder / "sales.png").write_bytes(b"\x89PNG")
    (folder / "notes.txt").write_text("not a snapshot", encoding="utf-8")
    os.utime(folder / "raw-overview.html", (1_000.0, 1_000.0))
    os.utime(folder / "sales.html", (4_000.0, 4_000.0))
    found = existing_snapshots(folder)
    assert [(s.dashboard, s.png) for s in found] == [("raw-overview", None), ("sales", folder / "sales.png")]
    note = Summary([], 0, [], found, folder).snapshot_note(1_000.0 + 600)
    assert note == (f"snapshots: raw-overview.html, sales.html in {folder} (oldest 10 min old; "
                    "`freshctl grafana snapshot` draws them again)")
