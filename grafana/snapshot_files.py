"""Where `freshctl grafana snapshot` writes the dashboard pictures, and which exist: `freshctl up`
lists them in its summary (drawing them there would add the time of every panel's query and
drawing to every `up`; `freshctl grafana snapshot` draws them when asked)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fresh.settings import Settings


@dataclass(frozen=True)
class SnapshotFiles:
    dashboard: str
    html: Path
    png: Path | None  # None when only the HTML is there
    written_at: float  # the HTML file's modification time (epoch seconds)


def snapshot_dir(settings: Settings) -> Path:
    """The default folder of `freshctl grafana snapshot` (git-ignored, under the stack home)."""
    return settings.stack_home / "snapshots"


def existing_snapshots(folder: Path) -> list[SnapshotFiles]:
    """The snapshots in `folder`, one per dashboard with an HTML file (the self-contained one), by name."""
    if not folder.is_dir():
        return []
    found = []
    for html in sorted(folder.glob("*.html")):
        png = html.with_suffix(".png")
        found.append(SnapshotFiles(html.stem, html, png if png.is_file() else None, html.stat().st_mtime))
    return found
